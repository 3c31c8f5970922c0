"""Which workers liveness finds dead, and what it settles (the whole path runs in test_faults)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from calculations import actions
from calculations.models import Calculation, WorkerProcess, WorkflowRun
from conftest import ApiClient
from workflows.identity import WorkerIdentity, this_worker
from workflows.worker import liveness
from workflows.worker.liveness import dead_workers, settle_dead_workers


def _killed_after_its_peers_ended_it(name: str) -> WorkerIdentity:
    """A worker registered on this machine whose process is gone, its registration ended by a peer
    that took it for dead; this worker's identity."""
    me, gone = this_worker(), subprocess.Popen(["true"])
    gone.wait()
    # (start ticks "1": no running process has them)
    actions.do_register_worker(name, host=me.host, pid=gone.pid, boot_id=me.boot_id, start_ticks="1")
    assert actions.do_end_worker(name, "found dead by a peer: it has been silent for 4 s")
    return me


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_its_peers_ended_its_registration_is_dead_for_its_attempts(
    alice: ApiClient, uploaded: Callable[[str, bytes], str]
) -> None:
    """A slow worker's peers ended its registration (it was silent too long); before its next beat
    registered it again, it started an attempt, and was killed. Its process being gone settles that
    attempt at once, as 'worker lost', like any exited worker's (CI: it waited for the heartbeat sweep)."""
    me = _killed_after_its_peers_ended_it("slow")
    pid = WorkerProcess.objects.get(name="slow").pid
    body = {"inputs": {"molecules": uploaded("slow.smi", b"CCO\n")}, "params": {}, "use_cache": False}
    calc_id = alice.post("/tools/obabel/calculations", body).json()["id"]
    actions.do_start_calculation(
        calc_id, 1, flow_run_id=None, backend="local", host=me.host, workdir="/w", worker="slow"
    )
    _killed_after_its_peers_ended_it("idle")  # ended, and holding nothing: not found again

    assert [(dead.name, dead.registered) for dead in dead_workers(me, judge_silence=False)] == [("slow", False)]
    assert asyncio.run(settle_dead_workers(me, judge_silence=False)) == 1
    calc = Calculation.objects.get(id=calc_id)
    assert (calc.state, calc.attempt) == ("QUEUED", 2)  # retried
    assert calc.error.startswith(f"worker lost: its worker slow exited (process {pid} is gone)")
    assert dead_workers(me, judge_silence=False) == []  # settled once


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("workflow_catalogue")
def test_a_workflow_run_of_a_worker_killed_after_its_peers_ended_it_resumes(
    alice: ApiClient, uploaded: Callable[[str, bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ended_in_prefect: list[Any] = []  # (stand-in for the Prefect server: the flow run marked ended there)

    async def mark_flow_run_ended(flow_run_id: UUID | None, reason: str, *, canceled: bool = False) -> None:
        ended_in_prefect.append((flow_run_id, canceled))

    monkeypatch.setattr(liveness, "mark_flow_run_ended", mark_flow_run_ended)
    me = _killed_after_its_peers_ended_it("slow-runner")
    molecules = uploaded("m.smi", b"CCO\n")
    step = {"tool": "obabel", "inputs": {"molecules": f"file:{molecules}"}}
    run_id = alice.post("/workflows/pipeline/runs", {"params": {"steps": {"convert": step}}}).json()["id"]
    flow_run_id = uuid4()
    actions.do_start_workflow_run(run_id, 1, flow_run_id=flow_run_id, worker="slow-runner")

    assert [dead.name for dead in dead_workers(me, judge_silence=False)] == ["slow-runner"]
    assert asyncio.run(settle_dead_workers(me, judge_silence=False)) == 1
    run = WorkflowRun.objects.get(id=run_id)
    assert (run.state, run.attempt) == ("QUEUED", 2)  # resumed as its next attempt
    assert ended_in_prefect == [(flow_run_id, False)]
