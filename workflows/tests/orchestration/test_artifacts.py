"""The dashboard's artifacts show a verifying rerun's verdict: one line in the description, and each
step's outcome beside it in a workflow run's table."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from calculations.models import WorkflowRun
from calculations.tests.crate_runs import GENOME
from calculations.tests.test_reruns import SDF, Upload, _blob, _converted, _play, _rerun, _run, _two_step_run
from calculations.tests.test_usage import run_prodigal
from conftest import ApiClient
from emgapiv2.config import get_settings
from workflows.orchestration.artifacts import calculation_table, workflow_run_table

pytestmark = pytest.mark.django_db


def test_a_calculations_artifact_says_its_verdict(alice: ApiClient, uploaded: Upload) -> None:
    original = _converted(alice, uploaded)
    _, before = calculation_table(original.id)
    assert "Verdict" not in before  # a run that verifies nothing says nothing
    rerun = _rerun(alice, original)
    _run(rerun["id"], [_blob("molecules", "molecules.sdf", SDF + b"!")])
    _, description = calculation_table(UUID(rerun["id"]))
    assert f"Verdict: **different**: different: molecules/molecules.sdf different ({len(SDF)} bytes expected, " in (
        description
    )


def test_a_workflow_runs_artifact_gives_each_steps_outcome(
    alice: ApiClient, alice_id: int, uploaded: Upload, workflow_catalogue: Any
) -> None:
    original = _two_step_run(alice, alice_id, uploaded)
    rerun_id = UUID(alice.post(f"/workflow-runs/{original.id}/rerun").json()["id"])
    file_id = str(original.steps.get(step="convert").inputs.get().file_id)
    _play(rerun_id, file_id, {"convert": b"CCO\t1\n", "again": b"CCO\t2\n"})
    rows, description = workflow_run_table(rerun_id)
    assert [(row["step"], row["verdict"]) for row in rows] == [("convert", "identical"), ("again", "identical")]
    assert "Verdict: **identical**: identical: all 2 steps reproduced their outputs" in description
    assert WorkflowRun.objects.get(id=rerun_id).verdict is not None


def test_a_calculations_artifact_shows_each_attempt_given_against_used(
    alice_id: int, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().execution, "enabled", ["local", "slurm"])
    calc = run_prodigal(alice_id, uploaded("genome.fna", GENOME), 40.96)
    rows, _ = calculation_table(calc.id)
    usage = {row["name"]: row["value"] for row in rows if row["kind"] == "usage"}
    assert usage == {
        "attempt 1 memory": "given 1,024 MB, used 41.0 MB (4 %)",
        "attempt 1 time": "given 3,600 s, used 2.0 s (0 %)",
        "attempt 1 cpus": "given 1, used 1.6 s CPU time (0.80 busy on average)",
    }
