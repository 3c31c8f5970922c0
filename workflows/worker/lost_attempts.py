"""Attempts whose worker is gone: settled as the policy table says, and their job stopped (the callers
then end their flow run in Prefect: `orchestration.flow_runs.mark_flow_run_ended`). The reconciler
uses this for stale heartbeats and lost flow runs; every worker for dead peers and for its own
predecessors on the same host."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, TypedDict
from uuid import UUID

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.models import Calculation
from calculations.policies import AttemptEnd
from calculations.states import RunState
from emgapiv2.config import get_settings
from workflows.backends import JobHandle, get_backend
from workflows.db import db
from workflows.identity import group_members, this_worker

logger = logging.getLogger(__name__)
S = RunState
SETTLED = {S.QUEUED: "retried", S.CANCELED: "canceled"}
LOST_FIELDS = ("id", "attempt", "state", "flow_run_id", "backend", "backend_job_id", "worker")


class LostAttempt(TypedDict):
    id: UUID
    attempt: int
    state: str
    flow_run_id: UUID | None
    backend: str
    backend_job_id: str
    worker: str  # the name of the worker that ran it


def settle(calc: LostAttempt, reason: str, *, actor: str = actions.RECONCILER_ACTOR) -> str:
    """End the attempt whose worker is gone, as the policy table says; name what followed
    ("retried", "canceled", "failed", or "moved on" if it had already ended). Database thread."""
    try:
        updated = actions.do_end_attempt(
            calc["id"], calc["attempt"], AttemptEnd.WORKER_LOST, message=reason, actor=actor
        )
    except InvalidTransition:
        return "moved on"
    return SETTLED.get(S(updated.state), "failed")


def _local_job(calculation_id: UUID, attempt: int) -> dict[str, Any]:
    provenance = Calculation.objects.filter(id=calculation_id).values_list("provenance", flat=True).first() or {}
    record: dict[str, Any] = next((r for r in provenance.get("attempts", []) if r.get("attempt") == attempt), {})
    return dict(record.get("job_details") or {}) | {"host": record.get("host", "")}


def kill_local_orphan(calc: LostAttempt) -> bool:
    """Kill a lost local attempt's process group if it runs on this machine, in this boot (and pid
    namespace), and still has members started with or after it (its leader may have exited: a
    sandboxed tool outlives the bwrap that started it if the worker died within its first
    milliseconds). Database thread."""
    job = _local_job(calc["id"], calc["attempt"])
    me = this_worker()
    same_machine = bool(me.boot_id) and job.get("boot_id") == me.boot_id and job.get("host") == me.host
    if not calc["backend_job_id"].isdigit() or not same_machine:
        return False
    pid = int(calc["backend_job_id"])
    if not group_members(pid, str(job.get("start_ticks", ""))):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    logger.warning("killed the process group %s of calculation %s, left by a lost worker", pid, calc["id"])
    return True


async def stop_orphan(calc: LostAttempt) -> None:
    """Best effort: stop the job a lost worker left behind: its container or Slurm job (any worker can
    reach them), or its local process group (only on its own machine)."""
    if not calc["backend_job_id"]:
        return
    if calc["backend"] == "local":
        await db(kill_local_orphan)(calc)
        return
    handle = JobHandle(backend=calc["backend"], job_id=calc["backend_job_id"], host="")
    try:
        await get_backend(calc["backend"]).cancel(handle, get_settings().worker.kill_grace_seconds)
    except Exception as exc:
        logger.warning("could not stop %s job %s: %s", calc["backend"], calc["backend_job_id"], exc)
