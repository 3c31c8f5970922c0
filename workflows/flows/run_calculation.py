"""run-calculation: executes one calculation, given only its id (design brief §3)."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import Cancelled, Completed, Failed, State

from calculations.models import Calculation
from calculations.states import TERMINAL_STATES, CalculationState
from workflows.backends import get_backend
from workflows.db import db
from workflows.execution.calculation_runs import CalculationRun
from workflows.orchestration.artifacts import publish_calculation


def _refusal(calculation_id: UUID) -> State | None:
    """Why a run started by hand (or retried from the dashboard) will not run anything, in a line."""
    state = Calculation.objects.filter(id=calculation_id).values_list("state", flat=True).first()
    if state is None:
        return Failed(message=f"calculation {calculation_id} does not exist")
    if state == CalculationState.CANCELED:
        return Cancelled(message=f"calculation {calculation_id}: CANCELED before it started")
    if state in TERMINAL_STATES:
        return Failed(
            message=f"calculation {calculation_id} already ended {state}: nothing to run again "
            "(submit it anew through the API, with use_cache false, to rerun it)"
        )
    return None


@flow(name="run-calculation", flow_run_name="calc-{calculation_id}", persist_result=False, log_prints=False)
async def run_calculation_flow(calculation_id: UUID) -> State:
    refusal: State | None = await db(_refusal)(calculation_id)
    if refusal is not None:
        get_run_logger().warning(refusal.message)
        return refusal
    context = get_run_context()
    flow_run_id = context.flow_run.id if context.flow_run else None  # type: ignore[union-attr]
    run = CalculationRun(calculation_id, get_run_logger(), backend_for=get_backend)
    state = await run.execute(flow_run_id=flow_run_id)
    if flow_run_id is not None:  # its table on the flow run's page: inputs, parameters, outputs, links
        await publish_calculation(flow_run_id, calculation_id)
    message = f"calculation {calculation_id}: {state}"
    if state == CalculationState.COMPLETE:
        return Completed(message=message)
    if state in (CalculationState.CANCELED, CalculationState.CANCELING):
        return Cancelled(message=message)
    return Failed(message=message)
