"""Which flow runs the reconciler gives up on (the sweep itself runs in test_faults and test_integration)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from uuid import uuid4

from django.utils import timezone
from prefect.client.schemas.objects import State
from prefect.states import Completed, Crashed, Pending, Running

from workflows.worker.reconciler import _flow_run_problems


def test_ended_stuck_and_vanished_flow_runs_are_problems_and_live_ones_are_not() -> None:
    stuck: State[None] = Pending()
    stuck.timestamp = timezone.now() - timedelta(hours=1)
    runs = {
        "crashed": SimpleNamespace(id=uuid4(), state=Crashed()),
        "completed": SimpleNamespace(id=uuid4(), state=Completed()),
        "stuck": SimpleNamespace(id=uuid4(), state=stuck),
        "pending": SimpleNamespace(id=uuid4(), state=Pending()),
        "running": SimpleNamespace(id=uuid4(), state=Running()),
    }
    vanished = uuid4()
    problems = _flow_run_problems(list(runs.values()), {run.id for run in runs.values()} | {vanished})
    assert "ended CRASHED" in problems[runs["crashed"].id]
    assert "ended COMPLETED" in problems[runs["completed"].id]
    assert "stuck in PENDING" in problems[runs["stuck"].id]
    assert "no longer exists" in problems[vanished]
    assert runs["pending"].id not in problems and runs["running"].id not in problems
