"""run-calculation: executes one calculation, given only its id (design brief §3)."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import Cancelled, Completed, Failed, State

from calculations.states import RunState
from workflows.backends import get_backend
from workflows.execution.calculation_runs import CalculationRun
from workflows.orchestration.artifacts import publish_calculation


# (no flow_run_name: the dispatcher names each flow run `calc-<id>` as it creates it, and Prefect's
# engine would rename it to the same at every start, a request more on every calculation's way)
@flow(name="run-calculation", persist_result=False, log_prints=False)
async def run_calculation_flow(calculation_id: UUID) -> State:
    context = get_run_context()
    flow_run_id = context.flow_run.id if context.flow_run else None  # type: ignore[union-attr]
    run = CalculationRun(calculation_id, get_run_logger(), backend_for=get_backend)
    state = await run.execute(flow_run_id=flow_run_id)
    if run.refusal:  # started by hand, or retried from the dashboard: nothing ran
        get_run_logger().warning(run.refusal)
        return Cancelled(message=run.refusal) if state == RunState.CANCELED else Failed(message=run.refusal)
    if flow_run_id is not None:  # its table on the flow run's page: inputs, parameters, outputs, links
        await publish_calculation(flow_run_id, calculation_id)
    message = f"calculation {calculation_id}: {state}"
    if state == RunState.COMPLETE:
        return Completed(message=message)
    if state in (RunState.CANCELED, RunState.CANCELING):
        return Cancelled(message=message)
    return Failed(message=message)
