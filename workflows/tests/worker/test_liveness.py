"""Which workers liveness finds dead, and what it settles (the whole path runs in test_faults)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from calculations import actions
from calculations.models import Calculation
from conftest import ApiClient
from workflows.identity import this_worker
from workflows.worker.liveness import dead_workers, settle_dead_workers


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_its_peers_ended_its_registration_is_dead_for_its_attempts(
    alice: ApiClient, uploaded: Callable[[str, bytes], str]
) -> None:
    """A slow worker's peers ended its registration (it was silent too long); before its next beat
    registered it again, it started an attempt, and was killed. Its process being gone settles that
    attempt at once, as 'worker lost', like any exited worker's (CI: it waited for the heartbeat sweep)."""
    me, gone = this_worker(), subprocess.Popen(["true"])
    gone.wait()
    ticks = "1"  # (a start time no running process has)
    actions.do_register_worker("slow", host=me.host, pid=gone.pid, boot_id=me.boot_id, start_ticks=ticks)
    assert actions.do_end_worker("slow", "found dead by a peer: it has been silent for 4 s")
    body = {"inputs": {"molecules": uploaded("slow.smi", b"CCO\n")}, "params": {}, "use_cache": False}
    calc_id = alice.post("/tools/obabel/calculations", body).json()["id"]
    actions.do_start_calculation(
        calc_id, 1, flow_run_id=None, backend="local", host=me.host, workdir="/w", worker="slow"
    )
    actions.do_register_worker("idle", host=me.host, pid=gone.pid, boot_id=me.boot_id, start_ticks=ticks)
    assert actions.do_end_worker("idle", "stopped")  # ended and holding nothing: not dead again

    assert [(dead.name, dead.registered) for dead in dead_workers(me, judge_silence=False)] == [("slow", False)]
    assert asyncio.run(settle_dead_workers(me, judge_silence=False)) == 1
    calc = Calculation.objects.get(id=calc_id)
    assert (calc.state, calc.attempt) == ("QUEUED", 2)  # retried
    assert calc.error.startswith(f"worker lost: its worker slow exited (process {gone.pid} is gone)")
    assert dead_workers(me, judge_silence=False) == []  # settled once
