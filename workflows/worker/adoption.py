"""A workflow's flow run an operator started in the Prefect dashboard (no workflow run behind it):
checked as the API checks a launch, and adopted as a workflow run of the operator account (or of the
owner of the files it names: `calculations/actions/dashboard.py`), as if launched through the API."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from prefect.utilities.engine import propose_state

from calculations.actions.dashboard import check_adopt_flow_run, one_line
from calculations.errors import Forbidden, InvalidInput, NotFound, QuotaExceeded
from calculations.orchestrator import WorkflowInfo
from workflows.db import db

REFUSALS = (InvalidInput, NotFound, Forbidden, QuotaExceeded)


async def adopt_flow_run(client: PrefectClient, flow_run: FlowRun) -> tuple[UUID, int] | None:
    """(workflow run id, attempt) the flow run now serves; None, and the flow run failed saying why
    in one line (its state message, which the dashboard's list of runs shows), if it is refused: a
    file that is not the operator account's, parameters that do not fit, a full quota."""
    deployment = await client.read_deployment(flow_run.deployment_id) if flow_run.deployment_id else None
    workflow = WorkflowInfo(
        name=deployment.name if deployment else flow_run.name,
        description=(deployment.description or "") if deployment else "",
        parameters_schema=dict(deployment.parameter_openapi_schema or {}) if deployment else {},
    )
    try:
        run = await db(check_adopt_flow_run)(workflow, dict(flow_run.parameters), flow_run.id)
    except REFUSALS as exc:
        message = one_line(f"not started: {exc}")
        await propose_state(client, Failed(message=message), flow_run_id=flow_run.id, force=True)
        return None
    return run.id, run.attempt
