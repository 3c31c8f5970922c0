"""One calculation run end to end in-process (no Prefect): real tools, real local backend."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from calculations.models import Calculation, File
from calculations.storage import get_storage
from conftest import ApiClient
from workflows.backends import LocalBackend
from workflows.execution import CalculationRun

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)


def run(calculation_id: str) -> Calculation:
    asyncio.run(CalculationRun(calculation_id, logger, backend_for=lambda _: LocalBackend()).execute())  # type: ignore[arg-type]
    return Calculation.objects.get(id=calculation_id)


def submit(client: ApiClient, tool: str, inputs: dict[str, str], params: dict) -> str:
    response = client.post(f"/tools/{tool}/calculations", {"inputs": inputs, "params": params, "use_cache": False})
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def blob_bytes(file: File) -> bytes:
    return b"".join(get_storage().iter_chunks(file.sha256))


def test_prodigal_outputs_match_a_direct_run(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], genome: bytes, tmp_path: Path
) -> None:
    calc = run(submit(alice, "prodigal", {"contigs": uploaded("genome.fna", genome)}, {"mode": "single"}))
    assert calc.state == "COMPLETE", calc.error
    (tmp_path / "g.fna").write_bytes(genome)
    subprocess.run(["prodigal", "-q", "-i", "g.fna", "-a", "p.faa", "-f", "gff", "-o", "g.gff", "-p", "single",
                    "-g", "11"], cwd=tmp_path, check=True)  # fmt: skip
    outputs = {f.output_role: f for f in calc.output_files.all()}
    assert blob_bytes(outputs["proteins"]) == (tmp_path / "p.faa").read_bytes()
    assert blob_bytes(outputs["genes"]) == (tmp_path / "g.gff").read_bytes()
    attempt = calc.provenance["attempts"][0]
    assert attempt["exit_code"] == 0 and attempt["argv"][0] == "prodigal" and attempt["stderr_sha256"]
    assert calc.provenance["executable"] == "/usr/bin/prodigal"
    assert [e.to_state for e in calc.events.all()] == ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]


def test_a_tool_error_carries_the_tools_own_message(alice: ApiClient, uploaded: Callable[[str, bytes], str]) -> None:
    calc = run(submit(alice, "prodigal", {"contigs": uploaded("short.fna", b">s\nACGTACGT\n")}, {"mode": "single"}))
    assert calc.state == "EXECUTOR_ERROR"
    assert "Sequence must be 20000 characters" in calc.error
    assert calc.exit_code not in (None, 0)
    assert not calc.output_files.exists()  # a failed run leaves no outputs


def test_missing_output_is_an_executor_error(alice: ApiClient, uploaded: Callable[[str, bytes], str]) -> None:
    calc = run(submit(alice, "obabel", {"molecules": uploaded("bad.smi", b"garbage(((\n")}, {}))
    assert calc.state == "EXECUTOR_ERROR"
    assert "produced no 'molecules' output" in calc.error and "0 molecules converted" in calc.error
    assert not calc.output_files.exists()


def test_obabel_converts_smiles(alice: ApiClient, uploaded: Callable[[str, bytes], str]) -> None:
    calc = run(submit(alice, "obabel", {"molecules": uploaded("ethanol.smi", b"CCO\n")}, {"output_format": "inchikey"}))
    assert calc.state == "COMPLETE", calc.error
    assert blob_bytes(calc.output_files.get()).strip() == b"LFQSCWFLJHTTHZ-UHFFFAOYSA-N"


def test_a_calculation_canceled_before_it_ran_is_not_run(
    alice: ApiClient, uploaded: Callable[[str, bytes], str]
) -> None:
    calc_id = submit(alice, "sleep", {"text": uploaded("t.txt", b"x\n")}, {"seconds": 30})
    alice.post(f"/calculations/{calc_id}/cancel")
    calc = run(calc_id)
    assert calc.state == "CANCELED" and calc.started_at is None
