"""The reconciler: the sweeps that keep Django and Prefect in agreement. Every calculation worker
runs them as a service, every `reconciler.interval_seconds`, with no flow run of their own: the
Runs page shows the reconciler only when it acted (a Prefect event, `emgapi.reconciler.acted`).
`reconcile-calculations` (`workflows/flows/reconcile_calculations.py`) runs them once, by hand.

- QUEUED calculations that never got a flow run (Prefect was unreachable) are dispatched.
- Running calculations whose heartbeat is stale (the worker was killed, ran out of memory, lost its
  host) and active ones whose flow run ended without finishing them lost their worker: the policy
  table (calculations/policies.py) decides what follows (the next attempt after a backoff while
  attempts are left, else SYSTEM_ERROR; CANCELED if a cancel was pending). A lost attempt's
  container or Slurm job is stopped, and its flow run marked Crashed (or Cancelled) in Prefect.
- Workflow runs never dispatched are dispatched; those whose flow run ended without ending them,
  vanished or never started are resumed as their next attempt (their COMPLETE steps are kept).
- (Leftovers, orphan blobs and expired idempotency records are the sweeper's, in every worker.)

Each sweep is one function; `reconcile_once` runs them in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from django.db.models import Q
from django.utils import timezone
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event

from calculations.actions import RECONCILER_ACTOR, do_end_workflow_run
from calculations.errors import InvalidTransition
from calculations.models import Calculation, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.run_kinds import CALCULATION, WORKFLOW_RUN, RunKind
from calculations.states import ACTIVE_STATES, ATTEMPT_IN_PROGRESS_STATES, RunState
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.identity import this_worker
from workflows.orchestration.flow_runs import mark_flow_run_ended, read_flow_runs
from workflows.orchestration.orchestrator import dispatch
from workflows.worker.liveness import exited_workers, lost_reason
from workflows.worker.lost_attempts import LOST_FIELDS, LostAttempt, settle, stop_orphan
from workflows.worker.periodic import every
from workflows.worker.prefect_cancels import cancel_rows_of

logger = logging.getLogger(__name__)
S = RunState


def _undispatched() -> list[UUID]:
    now = timezone.now()
    cutoff = now - timedelta(seconds=get_settings().reconciler.dispatch_after_seconds)
    return list(
        Calculation.objects.filter(
            state=S.QUEUED,
            flow_run_id__isnull=True,
            cached_from__isnull=True,
            workflow_run__isnull=True,  # a step is executed by its workflow run's flow run
            updated_at__lt=cutoff,
        )
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .values_list("id", flat=True)
    )


class _StaleRow(LostAttempt):
    heartbeat_at: datetime | None


def _stale() -> list[_StaleRow]:
    """Running calculations whose worker has stopped heartbeating (killed, out of memory, host lost)."""
    cutoff = timezone.now() - timedelta(seconds=get_settings().reconciler.stale_after_seconds)
    return list(
        Calculation.objects.filter(state__in=ATTEMPT_IN_PROGRESS_STATES)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff))
        .values(*LOST_FIELDS, "heartbeat_at")
    )


def _in_flight() -> list[LostAttempt]:
    """Active calculations whose flow run alone can tell whether they are lost: those no worker has
    started (QUEUED), or whose worker stopped heartbeating. A calculation its worker is running and
    heartbeating is never failed over its flow run: a flow run deleted or changed in Prefect (by an
    operator, or by anyone who reached the API) must not fail a healthy run."""
    fresh = timezone.now() - timedelta(seconds=get_settings().reconciler.stale_after_seconds)
    return list(
        Calculation.objects.filter(state__in=ACTIVE_STATES, flow_run_id__isnull=False)
        .exclude(state__in=ATTEMPT_IN_PROGRESS_STATES, heartbeat_at__gte=fresh)
        .values(*LOST_FIELDS)
    )


async def _read_flow_runs(ids: list[UUID]) -> list[FlowRun]:
    async with get_client() as client:
        return await read_flow_runs(client, ids)


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


def _cancelled_in_prefect(flow_runs: list[FlowRun]) -> dict[UUID, FlowRun]:
    """Flow runs someone cancelled in Prefect (the dashboard): their rows are canceled, not retried."""
    return {run.id: run for run in flow_runs if run.state is not None and run.state.is_cancelled()}


async def dispatch_undispatched(kind: RunKind[Any], undispatched: Callable[[], list[UUID]]) -> int:
    """QUEUED runs of `kind` that never reached Prefect (it was unreachable) are dispatched."""
    ids = await db(undispatched)()
    for run_id in ids:
        dispatch(kind.name, run_id)
    return len(ids)


def _undispatched_workflow_runs() -> list[UUID]:
    cutoff = timezone.now() - timedelta(seconds=get_settings().reconciler.dispatch_after_seconds)
    queued = WorkflowRun.objects.filter(state=S.QUEUED, flow_run_id__isnull=True, updated_at__lt=cutoff)
    return list(queued.values_list("id", flat=True))


def _workflow_runs_in_flight() -> list[Any]:
    active = WorkflowRun.objects.filter(state__in=ACTIVE_STATES, flow_run_id__isnull=False)
    return list(active.values("id", "attempt", "state", "flow_run_id"))


async def settle_lost_workflow_runs(counts: dict[str, int]) -> None:
    """Workflow runs whose flow run ended without ending them (its worker died between the two),
    vanished, or was never started: resumed as their next attempt (or CANCELED if canceling).
    A flow run that ended only just now is left to its worker, which is recording it."""
    in_flight = await db(_workflow_runs_in_flight)()
    if not in_flight:
        return
    flow_runs = await _read_flow_runs([run["flow_run_id"] for run in in_flight])
    problems = _flow_run_problems(flow_runs, {run["flow_run_id"] for run in in_flight})
    grace = timedelta(seconds=get_settings().reconciler.pending_after_seconds)
    just_ended = {
        run.id
        for run in flow_runs
        if run.state is not None and run.state.is_final() and timezone.now() - run.state.timestamp < grace
    }
    cancelled = _cancelled_in_prefect(flow_runs)
    for run in in_flight:
        if run["flow_run_id"] in cancelled:  # cancelled in Prefect (the dashboard): canceled, never resumed
            await db(cancel_rows_of)(cancelled[run["flow_run_id"]])
        reason = problems.get(run["flow_run_id"])
        if reason is None or run["flow_run_id"] in just_ended:
            continue
        try:
            ended = await db(do_end_workflow_run)(
                run["id"], run["attempt"], AttemptEnd.WORKER_LOST, message=reason, actor=RECONCILER_ACTOR
            )
        except InvalidTransition:
            continue
        counts["workflow runs " + ("resumed" if ended.state == S.QUEUED else "ended")] += 1


async def settle_stale_heartbeats(counts: dict[str, int]) -> None:
    """Calculations whose worker stopped heartbeating lost it: settle them, stop their job."""
    stale = await db(_stale)()
    if not stale:
        return
    exited = await db(exited_workers)(this_worker(), {calc["worker"] for calc in stale if calc["worker"]})
    for calc in stale:
        if what := exited.get(calc["worker"]):
            reason = lost_reason(calc["worker"], what)
        elif calc["heartbeat_at"] is not None:
            silent = (timezone.now() - calc["heartbeat_at"]).total_seconds()
            reason = f"heartbeat lost: its worker has been silent for {silent:.0f} s"
        else:
            reason = "heartbeat lost: its worker never reported"
        outcome = await db(settle)(calc, reason)
        if outcome in counts:
            counts[outcome] += 1
            await stop_orphan(calc)
            await mark_flow_run_ended(calc["flow_run_id"], reason, canceled=outcome == "canceled")


async def settle_lost_flow_runs(counts: dict[str, int]) -> None:
    """Calculations whose flow run ended without finishing them, vanished, or was never started."""
    in_flight = await db(_in_flight)()
    if not in_flight:
        return
    flow_runs = await _read_flow_runs([c["flow_run_id"] for c in in_flight])
    problems = _flow_run_problems(flow_runs, {c["flow_run_id"] for c in in_flight})
    still_open = {run.id for run in flow_runs if run.state is not None and not run.state.is_final()}
    cancelled = _cancelled_in_prefect(flow_runs)
    for calc in in_flight:
        if calc["flow_run_id"] in cancelled:
            # cancelled in Prefect (the dashboard): the row is canceled (at once if it had not started;
            # an attempt whose worker is gone is then settled as CANCELED, never retried)
            await db(cancel_rows_of)(cancelled[calc["flow_run_id"]])
        if reason := problems.get(calc["flow_run_id"]):
            outcome = await db(settle)(calc, reason)
            if outcome in counts:
                counts[outcome] += 1
                if calc["flow_run_id"] in still_open:  # stuck PENDING: end it in Prefect too
                    await mark_flow_run_ended(calc["flow_run_id"], reason, canceled=outcome == "canceled")


async def reconcile_once() -> dict[str, int]:
    """Every sweep, in turn; how many rows each acted on."""
    dispatched = await dispatch_undispatched(CALCULATION, _undispatched)
    counts = {"dispatched": dispatched, "retried": 0, "failed": 0, "canceled": 0}
    counts["workflow runs dispatched"] = await dispatch_undispatched(WORKFLOW_RUN, _undispatched_workflow_runs)
    counts["workflow runs resumed"] = counts["workflow runs ended"] = 0
    await settle_stale_heartbeats(counts)
    await settle_lost_flow_runs(counts)
    await settle_lost_workflow_runs(counts)
    return counts


async def serve(worker_name: str) -> NoReturn:
    """The sweeps every `reconciler.interval_seconds` (the first after one interval): no flow run each
    time (thousands a day on the Runs page); a Prefect event, and a log line, only when they acted."""
    interval = get_settings().reconciler.interval_seconds

    async def one_pass() -> None:
        acted = {what: count for what, count in (await reconcile_once()).items() if count}
        if acted:
            logger.info("reconciled: %s", acted)
            emit_event(
                event="emgapi.reconciler.acted",
                resource={"prefect.resource.id": f"emgapi.worker.{worker_name}", "prefect.resource.name": worker_name},
                payload=acted,
            )

    await asyncio.sleep(interval)
    await every(interval, one_pass, failed="reconciling failed", logger=logger)
