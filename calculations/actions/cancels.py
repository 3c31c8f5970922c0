"""Asking a run of any kind to stop. How a running attempt then ends is its end action's
(`attempts.do_end_attempt`, `workflow_runs.do_end_workflow_run`), through the policy table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from calculations.actions.followers import release_followers
from calculations.actions.transitions import apply_transition, lock_run
from calculations.actions.verdicts import record_calculation_verdict, record_workflow_run_verdict
from calculations.errors import InvalidTransition
from calculations.models import Calculation, WorkflowRun
from calculations.orchestrator import stop_run_after_commit
from calculations.run_kinds import CALCULATION, WORKFLOW_RUN, Run, RunKind
from calculations.states import ACTIVE_STATES, RunState

S = RunState


def cancel_steps(run: WorkflowRun, actor: str, why: str) -> int:
    """Ask every step of `run` still in flight to stop (their tools, containers, Slurm jobs go)."""
    active = Calculation.objects.filter(workflow_run=run, state__in=ACTIVE_STATES).exclude(state=S.CANCELING)
    ids = list(active.values_list("id", flat=True))
    for calculation_id in ids:
        try:
            request_cancel(CALCULATION, calculation_id, actor=f"{actor} ({why})")
        except InvalidTransition:
            pass  # it ended meanwhile
    return len(ids)


def _own_flow_run(run: Calculation | WorkflowRun) -> bool:
    """Whether `run` has a flow run of its own to stop. A step is a task run of its workflow's flow
    run: stopping that would cancel the whole workflow run. The worker stops the step's tool, and the
    flow then sees the step CANCELED."""
    if run.flow_run_id is None:
        return False
    if isinstance(run, Calculation) and run.workflow_run_id is not None:
        return not WorkflowRun.objects.filter(id=run.workflow_run_id, flow_run_id=run.flow_run_id).exists()
    return True


# What a cancel does beyond the row, by kind: when it is requested, and when it ends a run that had
# not started. (A calculation's followers run on their own; a workflow run's steps stop.)
_ON_REQUEST: dict[str, Callable[[Any, str], object]] = {
    WORKFLOW_RUN.name: lambda run, actor: cancel_steps(run, actor, f"workflow run {run.id} canceled"),
}


def _calculation_canceled_at_once(calc: Calculation) -> None:
    release_followers(calc)
    record_calculation_verdict(calc)  # a verifying rerun says it was not reproduced


_ON_CANCELED_AT_ONCE: dict[str, Callable[[Any], object]] = {
    CALCULATION.name: _calculation_canceled_at_once,
    WORKFLOW_RUN.name: record_workflow_run_verdict,  # a verifying rerun says it was not reproduced
}


@transaction.atomic
def request_cancel(kind: RunKind[Run], run_id: UUID, *, actor: str) -> Run:
    """Ask for a run to stop. One not yet started is CANCELED at once; a running one is CANCELING until
    its worker has stopped it (or the reconciler found the worker gone). Asking again is harmless."""
    run = lock_run(kind, run_id)
    if run.state == S.CANCELING:
        return run
    if run.state not in ACTIVE_STATES:
        raise InvalidTransition(f"{kind.name} {run.id} is already {run.state}")
    was_queued = run.state == S.QUEUED
    run = apply_transition(run, run.attempt, S.CANCELING, actor=actor, reason="cancel requested")
    if on_request := _ON_REQUEST.get(kind.name):
        on_request(run, actor)
    if was_queued:
        run = apply_transition(
            run, run.attempt, S.CANCELED, actor=actor, reason="canceled before it started", finished_at=timezone.now()
        )
        if on_canceled := _ON_CANCELED_AT_ONCE.get(kind.name):
            on_canceled(run)
    if _own_flow_run(run):
        assert run.flow_run_id is not None
        stop_run_after_commit(run.flow_run_id)
    return run


def do_request_cancel(calculation_id: UUID, *, actor: str) -> Calculation:
    """Stop a calculation (`request_cancel`)."""
    return request_cancel(CALCULATION, calculation_id, actor=actor)


def do_request_cancel_workflow_run(workflow_run_id: UUID, *, actor: str) -> WorkflowRun:
    """Stop a workflow run: every step in flight is canceled and no new step starts (`request_cancel`)."""
    return request_cancel(WORKFLOW_RUN, workflow_run_id, actor=actor)
