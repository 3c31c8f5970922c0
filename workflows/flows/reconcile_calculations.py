"""reconcile-calculations: the scheduled sweep that keeps Django and Prefect in agreement.

- QUEUED calculations that never got a flow run (Prefect was unreachable) are dispatched.
- Running calculations whose heartbeat is stale (the worker was killed, ran out of memory, lost its
  host) and active ones whose flow run ended without finishing them are failed with a system
  error: the next attempt is queued (after a backoff) while attempts are left, else SYSTEM_ERROR;
  CANCELED if a cancel was pending. A lost attempt's container or Slurm job is stopped, and its
  flow run marked Crashed in Prefect.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db.models import Q
from django.utils import timezone
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.idempotency import expire_records
from calculations.models import Calculation
from calculations.states import ACTIVE_STATES, CalculationState
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.dispatch import dispatch_calculation

S = CalculationState
FLOW_RUN_PAGE = 200


def _undispatched() -> list[UUID]:
    now = timezone.now()
    cutoff = now - timedelta(seconds=get_settings().reconciler.dispatch_after_seconds)
    return list(
        Calculation.objects.filter(
            state=S.QUEUED, flow_run_id__isnull=True, cached_from__isnull=True, updated_at__lt=cutoff
        )
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .values_list("id", flat=True)
    )


def _stale() -> list[dict[str, Any]]:
    """Running calculations whose worker has stopped heartbeating (killed, out of memory, host lost)."""
    cutoff = timezone.now() - timedelta(seconds=get_settings().reconciler.stale_after_seconds)
    return list(
        Calculation.objects.filter(state__in=(S.INITIALIZING, S.RUNNING, S.CANCELING))
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff))
        .values("id", "attempt", "state", "flow_run_id", "backend", "backend_job_id", "heartbeat_at")
    )


def _in_flight() -> list[dict[str, Any]]:
    return list(
        Calculation.objects.filter(state__in=ACTIVE_STATES, flow_run_id__isnull=False).values(
            "id", "attempt", "state", "flow_run_id"
        )
    )


def _settle(calc: dict[str, Any], reason: str) -> str:
    """End the attempt whose worker is gone: CANCELED if a cancel was pending, else a system error
    (which queues the next attempt while attempts are left)."""
    try:
        if calc["state"] == S.CANCELING:
            actions.do_finish_cancel(calc["id"], calc["attempt"], reason=reason, actor=actions.RECONCILER_ACTOR)
            return "canceled"
        updated = actions.do_fail_calculation(
            calc["id"], calc["attempt"], state=S.SYSTEM_ERROR, error=reason, actor=actions.RECONCILER_ACTOR
        )
        return "retried" if updated.state == S.QUEUED else "failed"
    except InvalidTransition:
        return "moved on"


async def _stop_orphan(calc: dict[str, Any]) -> None:
    """Best effort: stop the job a lost worker left behind, where any worker can reach it (a
    container, a Slurm job). A local process is left to end by itself: its pid may be on another
    host, or reused."""
    if calc["backend"] not in ("container", "slurm") or not calc["backend_job_id"]:
        return
    from workflows.backends import JobHandle, get_backend

    handle = JobHandle(backend=calc["backend"], job_id=calc["backend_job_id"], host="")
    try:
        await get_backend(calc["backend"]).cancel(handle, get_settings().worker.kill_grace_seconds)
    except Exception as exc:
        get_run_logger().warning("could not stop %s job %s: %s", calc["backend"], calc["backend_job_id"], exc)


async def _mark_crashed(flow_run_id: UUID | None, reason: str, *, canceled: bool = False) -> None:
    """Tell Prefect the lost attempt's flow run is over (it would show RUNNING forever): Crashed,
    or Cancelled if its calculation was being canceled."""
    if flow_run_id is None:
        return
    from prefect.states import Cancelled, Crashed

    try:
        async with get_client() as client:
            state = Cancelled(message=reason) if canceled else Crashed(message=reason)
            await client.set_flow_run_state(flow_run_id, state, force=True)
    except Exception as exc:
        get_run_logger().warning("could not mark flow run %s crashed: %s", flow_run_id, exc)


async def _read_flow_runs(ids: list[UUID]) -> list[Any]:
    """All of them: the API answers at most a page (200) per request, and a run missing from the
    answer would be taken for a vanished one."""
    runs: list[Any] = []
    async with get_client() as client:
        for start in range(0, len(ids), FLOW_RUN_PAGE):
            chunk = ids[start : start + FLOW_RUN_PAGE]
            runs += await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
    return runs


def _flow_run_problems(flow_runs: list[Any], expected: set[UUID]) -> dict[UUID, str]:
    """Flow runs that will never finish their calculation: ended, stuck in PENDING (claimed by a
    worker that died before starting it), or gone from Prefect."""
    pending_after = timedelta(seconds=get_settings().reconciler.pending_after_seconds)
    now = timezone.now()
    problems: dict[UUID, str] = {}
    for run in flow_runs:
        if run.state is None:
            continue
        if run.state.is_final():
            problems[run.id] = f"flow run {run.id} ended {run.state.type.value} without finishing it"
        elif run.state.is_pending() and run.state.timestamp and now - run.state.timestamp > pending_after:
            problems[run.id] = f"flow run {run.id} was stuck in PENDING (its worker never started it)"
    for missing in expected - {run.id for run in flow_runs}:
        problems[missing] = f"flow run {missing} no longer exists in Prefect"
    return problems


@flow(name="reconcile-calculations", persist_result=False)
async def reconcile_calculations_flow() -> dict[str, int]:
    logger = get_run_logger()
    counts = {"dispatched": 0, "retried": 0, "failed": 0, "canceled": 0}
    for calculation_id in await db(_undispatched)():
        dispatch_calculation(calculation_id)
        counts["dispatched"] += 1

    for calc in await db(_stale)():
        silent = (timezone.now() - calc["heartbeat_at"]).total_seconds() if calc["heartbeat_at"] else None
        reason = "heartbeat lost: its worker " + (
            f"has been silent for {silent:.0f} s" if silent is not None else "never reported"
        )
        outcome = await db(_settle)(calc, reason)
        if outcome in counts:
            counts[outcome] += 1
            await _stop_orphan(calc)
            await _mark_crashed(calc["flow_run_id"], reason, canceled=outcome == "canceled")

    in_flight = await db(_in_flight)()
    if in_flight:
        flow_runs = await _read_flow_runs([c["flow_run_id"] for c in in_flight])
        problems = _flow_run_problems(flow_runs, {c["flow_run_id"] for c in in_flight})
        still_open = {run.id for run in flow_runs if run.state is not None and not run.state.is_final()}
        for calc in in_flight:
            if reason := problems.get(calc["flow_run_id"]):
                outcome = await db(_settle)(calc, reason)
                if outcome in counts:
                    counts[outcome] += 1
                    if calc["flow_run_id"] in still_open:  # stuck PENDING: end it in Prefect too
                        await _mark_crashed(calc["flow_run_id"], reason, canceled=outcome == "canceled")
    counts["idempotency_records_expired"] = await db(expire_records)()
    if any(counts.values()):
        logger.info("reconciled: %s", counts)
    return counts
