"""Real runs export RO-Crates that roc-validator accepts for their Workflow Run Crate 0.5 profile at
the REQUIRED level, offline (calculations/tests/crate_validation.py): prodigal on the demo genome, a
two-step pipeline (prodigal, then hmmsearch on its proteins) and a map, each run for real through
the API, the Prefect server and the worker, its crate taken from the API as a user would. (A GA4GH
TES task's crate, and every kind's crate with each `data` choice, are validated in
calculations/tests/test_crate_validation.py, from runs made through the actions.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calculations.tests.crate_validation import PROCESS_RUN, PROVENANCE_RUN, validate_crates
from emgapiv2.config import BASE_DIR
from workflows.tests.test_integration import TERMINAL, Api
from workflows.tests.test_workflows import run_workflow, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
DEMO = BASE_DIR / "demo" / "data"


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


def _crate(api: Api, path: str, to: Path) -> Path:
    response = api.http.get(path)
    assert response.status_code == 200, response.text
    to.write_bytes(response.content)
    return to


def test_real_runs_export_crates_their_profiles_accept(api: Api, tmp_path: Path) -> None:
    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    profile = api.upload("family.hmm", (DEMO / "family.hmm").read_bytes())
    molecules = [api.upload(f"m{i}.smi", f"{'C' * (i + 1)}O m{i}\n".encode()) for i in range(3)]
    # all three at once: the worker runs them side by side
    calculation = api.submit("prodigal", {"contigs": genome}, {"mode": "meta"}, use_cache=False).json()["id"]
    pipeline = run_workflow(api, "pipeline", {"steps": {
        "genes": {"tool": "prodigal", "params": {"mode": "meta"}, "inputs": {"contigs": f"file:{genome}"}},
        "hits": {"tool": "hmmsearch", "params": {"evalue": 1e-5},
                 "inputs": {"profile": f"file:{profile}", "sequences": "genes.proteins"}},
    }})["id"]  # fmt: skip
    mapped = run_workflow(api, "pipeline", {"steps": {
        "convert": {"tool": "obabel", "params": {"output_format": "sdf"},
                    "inputs": {"molecules": {"each": [f"file:{m}" for m in molecules]}}},
    }})["id"]  # fmt: skip

    assert api.wait_for(calculation, TERMINAL, timeout_seconds=90)["state"] == "COMPLETE"
    for run_id in (pipeline, mapped):
        run = wait_run(api, run_id)
        assert run["state"] == "COMPLETE", run["error"]

    crates = [
        (_crate(api, f"/calculations/{calculation}/crate", tmp_path / "prodigal.crate.zip"), PROCESS_RUN),
        (_crate(api, f"/workflow-runs/{pipeline}/crate", tmp_path / "pipeline.crate.zip"), PROVENANCE_RUN),
        (_crate(api, f"/workflow-runs/{mapped}/crate", tmp_path / "map.crate.zip"), PROVENANCE_RUN),
    ]
    reports = validate_crates(crates)
    invalid = [report for report in reports if not report.is_valid]
    assert not invalid, "\n\n".join(str(report) for report in invalid)
    assert not any(report.refused for report in reports)  # offline: everything it asked for was vendored
