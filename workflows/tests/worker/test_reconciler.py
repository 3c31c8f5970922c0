"""Which flow runs the reconciler gives up on (the sweep itself runs in test_faults and test_integration)."""

from __future__ import annotations

import asyncio
import subprocess
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest
from django.utils import timezone
from prefect.client.schemas.objects import State
from prefect.states import Completed, Crashed, Pending, Running

from calculations import actions
from calculations.models import Calculation
from conftest import ApiClient
from workflows.identity import this_worker
from workflows.worker.reconciler import _flow_run_problems, settle_stale_heartbeats


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


@pytest.mark.django_db(transaction=True)
def test_a_silent_attempt_whose_worker_exited_here_is_settled_as_worker_lost_else_as_heartbeat_lost(
    alice: ApiClient, uploaded: Callable[[str, bytes], str]
) -> None:
    """Whichever sweep finds it first (CI: the silence was found before the restarted worker looked),
    an attempt whose worker's process on this machine is gone is settled for that reason."""
    me, gone = this_worker(), subprocess.Popen(["true"])
    gone.wait()  # a process that ran here and exited: the dead worker
    workers = {"exited": (gone.pid, "1"), "elsewhere": (1, "1")}
    ids = {}
    for name, (pid, ticks) in workers.items():
        host = me.host if name == "exited" else "another-host"
        actions.do_register_worker(name, host=host, pid=pid, boot_id=me.boot_id, start_ticks=ticks)
        body = {"inputs": {"molecules": uploaded(f"{name}.smi", b"CCO\n")}, "params": {}, "use_cache": False}
        calc_id = alice.post("/tools/obabel/calculations", body).json()["id"]
        actions.do_start_calculation(
            calc_id, 1, flow_run_id=None, backend="local", host=host, workdir="/w", worker=name
        )
        stale = timezone.now() - timedelta(hours=1)
        Calculation.objects.filter(id=calc_id).update(heartbeat_at=stale, updated_at=stale)
        ids[name] = calc_id
    counts: dict[str, int] = defaultdict(int)
    asyncio.run(settle_stale_heartbeats(counts))
    exited, elsewhere = (Calculation.objects.get(id=ids[name]) for name in ("exited", "elsewhere"))
    assert (exited.state, exited.attempt) == ("QUEUED", 2)  # retried, either way
    assert exited.error.startswith(f"worker lost: its worker exited exited (process {gone.pid} is gone)")
    assert elsewhere.error.startswith("heartbeat lost: its worker has been silent for 3600 s")
