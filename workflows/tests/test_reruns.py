"""A rerun that verifies, for real (a Prefect server and worker, real tools): prodigal rerun with
`emgapi rerun ID --verify` is identical for every output; a two-step pipeline's rerun is identical
step by step; the nondeterministic test tool `dice` differs, and its verdict says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emgapiv2.config import BASE_DIR
from workflows.tests.test_integration import TERMINAL, Api
from workflows.tests.test_workflows import run_workflow, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
EMGAPI = Path(sys.executable).parent / "emgapi"
DEMO = BASE_DIR / "demo" / "data"


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url, user="verifier")


def _emgapi(api: Api, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("EMGAPI_")}
    url = str(api.http.base_url).rstrip("/").removesuffix("/api/v2")
    token = api.http.headers["Authorization"].removeprefix("Bearer ")
    env |= {"HOME": str(tmp_path), "COLUMNS": "200", "EMGAPI_URL": url, "EMGAPI_TOKEN": token}
    return subprocess.run([str(EMGAPI), *args], env=env, capture_output=True, encoding="utf-8", timeout=180)


def test_prodigal_rerun_verify_is_identical_for_every_output(api: Api, tmp_path: Path) -> None:
    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    first = api.submit("prodigal", {"contigs": genome}, {"mode": "meta"}, backend="local", use_cache=False)
    original = api.wait_for(first.json()["id"], TERMINAL)
    assert original["state"] == "COMPLETE", original["error"]

    verified = _emgapi(api, tmp_path, "rerun", original["id"], "--verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("identical: all 2 outputs have the expected sha256")
    assert "genes/genes.gff" in verified.stdout and "proteins/proteins.faa" in verified.stdout
    rerun = api.http.get("/calculations", params={"tool": "prodigal", "limit": 1}).json()["items"][0]
    shown = api.http.get(f"/calculations/{rerun['id']}").json()
    assert shown["rerun_of"] == original["id"] and not shown["cache_hit"]
    assert (shown["tool_version"], shown["params"], shown["backend"]) == (
        original["tool_version"], original["params"], original["backend"]
    )  # fmt: skip
    assert {(o["role"], o["status"]) for o in shown["verdict"]["outputs"]} == {
        ("genes", "identical"),
        ("proteins", "identical"),
    }


def test_a_two_step_pipeline_rerun_is_identical_step_by_step(api: Api) -> None:
    smiles = api.upload("m.smi", b"CCO ethanol\nc1ccccc1 benzene\n")
    steps = {
        "canonical": {"tool": "obabel", "params": {"output_format": "can"}, "inputs": {"molecules": f"file:{smiles}"}},
        "inchi": {"tool": "obabel", "params": {"output_format": "inchi"},
                  "inputs": {"molecules": "canonical.molecules"}},
    }  # fmt: skip
    original = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"])
    assert original["state"] == "COMPLETE", original["error"]

    response = api.http.post(f"/workflow-runs/{original['id']}/rerun")
    assert response.status_code == 202, response.text
    rerun = wait_run(api, response.json()["id"])
    assert rerun["state"] == "COMPLETE", rerun["error"]
    assert all(step["cached_from"] is None for step in rerun["steps"])  # every step ran again
    verdict = rerun["verdict"]
    assert verdict["outcome"] == "identical", verdict["summary"]
    assert [(s["step"], s["outcome"]) for s in verdict["steps"]] == [("canonical", "identical"), ("inchi", "identical")]


def test_the_nondeterministic_tool_differs_naming_its_output(api: Api, tmp_path: Path) -> None:
    text = api.upload("t.txt", b"hello\n")
    original = api.wait_for(api.submit("dice", {"text": text}, {}, backend="local").json()["id"], TERMINAL)
    assert original["state"] == "COMPLETE", original["error"]
    verified = _emgapi(api, tmp_path, "rerun", original["id"], "--verify", "--json")
    assert verified.returncode == 0, verified.stderr  # declared: not a failure
    verdict = json.loads(verified.stdout)["verdict"]
    assert verdict["outcome"] == "differs"
    assert "roll/roll.txt differs (the tool declares it nondeterministic)" in verdict["summary"]
    assert "stamp/stamp.txt expected to differ: carries timestamps" in verdict["summary"]
