"""A crate run here by another user, for real (a Prefect server and worker, real tools): prodigal's
crate imported with `emgapi import FILE --wait` is identical for every output; a two-step pipeline's
crate is identical step by step; the nondeterministic test tool `dice` differs, naming its output;
a crate whose input only its exporter holds is refused, every problem on its own line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workflows.tests.test_integration import TERMINAL, Api
from workflows.tests.test_reruns import DEMO, _emgapi
from workflows.tests.test_workflows import run_workflow, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def exporter(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url, user="exporter")


@pytest.fixture
def importer(live_server: Any) -> Api:
    return Api(live_server.url, user="importer")


def _export(api: Api, path: str, target: Path, data: str = "all") -> Path:
    response = api.http.get(f"{path}/crate", params={"data": data})
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return target


def test_prodigals_crate_imported_by_another_user_is_identical(exporter: Api, importer: Api, tmp_path: Path) -> None:
    genome = exporter.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    first = exporter.submit("prodigal", {"contigs": genome}, {"mode": "meta"}, backend="local", use_cache=False)
    original = exporter.wait_for(first.json()["id"], TERMINAL)
    assert original["state"] == "COMPLETE", original["error"]

    # without its data, the genome is only the exporter's: refused, nothing made
    bare = _export(exporter, f"/calculations/{original['id']}", tmp_path / "bare.crate.zip", data="none")
    refused = _emgapi(importer, tmp_path, "import", str(bare))
    assert refused.returncode == 6, refused.stderr
    assert "error (422): the crate cannot be run here:\n  - missing input: input 'contigs'" in refused.stderr
    assert importer.http.get("/calculations").json()["count"] == importer.http.get("/files").json()["count"] == 0

    crate = _export(exporter, f"/calculations/{original['id']}", tmp_path / "prodigal.crate.zip")
    imported = _emgapi(importer, tmp_path, "import", str(crate), "--wait")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("identical: all 2 outputs have the expected sha256")
    assert "genes/genes.gff" in imported.stdout and "proteins/proteins.faa" in imported.stdout
    [mine] = importer.http.get("/calculations").json()["items"]
    assert (mine["tool_version"], mine["params"], mine["state"]) == (
        original["tool_version"], original["params"], "COMPLETE"
    )  # fmt: skip
    assert mine["inputs"]["contigs"] != original["inputs"]["contigs"]  # the importer's own copy of the genome


def test_a_pipelines_crate_imported_is_identical_step_by_step(exporter: Api, importer: Api, tmp_path: Path) -> None:
    smiles = exporter.upload("m.smi", b"CCO ethanol\nc1ccccc1 benzene\n")
    steps = {
        "canonical": {"tool": "obabel", "params": {"output_format": "can"}, "inputs": {"molecules": f"file:{smiles}"}},
        "inchi": {"tool": "obabel", "params": {"output_format": "inchi"},
                  "inputs": {"molecules": "canonical.molecules"}},
    }  # fmt: skip
    original = wait_run(exporter, run_workflow(exporter, "pipeline", {"steps": steps})["id"])
    assert original["state"] == "COMPLETE", original["error"]

    crate = _export(exporter, f"/workflow-runs/{original['id']}", tmp_path / "pipeline.crate.zip")
    with crate.open("rb") as zipped:
        response = importer.http.post("/crates", files={"crate": ("pipeline.crate.zip", zipped, "application/zip")})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "workflow-run" and body["source"].endswith(f"/api/v2/workflow-runs/{original['id']}")
    run = wait_run(importer, body["id"])
    assert run["state"] == "COMPLETE", run["error"]
    assert all(step["cached_from"] is None for step in run["steps"])  # every step ran
    verdict = run["verdict"]
    assert verdict["outcome"] == "identical", verdict["summary"]
    assert [(s["step"], s["outcome"]) for s in verdict["steps"]] == [("canonical", "identical"), ("inchi", "identical")]


def test_the_nondeterministic_tools_crate_differs_naming_its_output(
    exporter: Api, importer: Api, tmp_path: Path
) -> None:
    text = exporter.upload("t.txt", b"hello\n")
    original = exporter.wait_for(exporter.submit("dice", {"text": text}, {}, backend="local").json()["id"], TERMINAL)
    assert original["state"] == "COMPLETE", original["error"]
    crate = _export(exporter, f"/calculations/{original['id']}", tmp_path / "dice.crate.zip")
    imported = _emgapi(importer, tmp_path, "import", str(crate), "--wait", "--json")
    assert imported.returncode == 0, imported.stderr  # declared: not a failure
    verdict = json.loads(imported.stdout)["verdict"]
    assert verdict["outcome"] == "differs"
    assert "roll/roll.txt differs (the tool declares it nondeterministic)" in verdict["summary"]
