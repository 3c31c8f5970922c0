"""Asking a calculation to stop. How a running attempt then ends is `attempts.do_end_attempt`'s."""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.utils import timezone

from calculations.actions.followers import release_followers
from calculations.actions.transitions import apply_transition, lock_calculation
from calculations.errors import InvalidTransition
from calculations.launching import stop_run_after_commit
from calculations.models import Calculation, WorkflowRun
from calculations.states import ACTIVE_STATES, CalculationState

S = CalculationState


@transaction.atomic
def do_request_cancel(calculation_id: UUID, *, actor: str) -> Calculation:
    """Ask for a calculation to stop. One not yet started is CANCELED at once; a running one is
    CANCELING until its worker has stopped the tool (or the reconciler found the worker gone)."""
    calc = lock_calculation(calculation_id)
    if calc.state == S.CANCELING:
        return calc
    if calc.state not in ACTIVE_STATES:
        raise InvalidTransition(f"calculation {calc.id} is already {calc.state}")
    was_queued = calc.state == S.QUEUED
    calc = apply_transition(calc, calc.attempt, S.CANCELING, actor=actor, reason="cancel requested")
    if was_queued:
        calc = apply_transition(
            calc, calc.attempt, S.CANCELED, actor=actor, reason="canceled before it started", finished_at=timezone.now()
        )
        release_followers(calc)
    if calc.flow_run_id is not None and not _runs_in_its_workflows_flow_run(calc):
        stop_run_after_commit(calc.flow_run_id)
    return calc


def _runs_in_its_workflows_flow_run(calc: Calculation) -> bool:
    """A step executed as a task run of its workflow's flow run: stopping that flow run would cancel
    the whole workflow run. The worker stops the step's tool; the flow then sees the step CANCELED."""
    if calc.workflow_run_id is None:
        return False
    return WorkflowRun.objects.filter(id=calc.workflow_run_id, flow_run_id=calc.flow_run_id).exists()
