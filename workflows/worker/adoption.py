"""A workflow's flow run an operator started in the Prefect dashboard (no workflow run behind it):
adopted as a workflow run of the operator account, as if launched through the API."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from prefect.utilities.engine import propose_state

from calculations import actions
from calculations.errors import QuotaExceeded
from emgapiv2.config import get_settings
from workflows.db import db


async def adopt_flow_run(client: PrefectClient, flow_run: FlowRun) -> tuple[UUID, int] | None:
    """(workflow run id, attempt) the flow run now serves; None, and the flow run failed saying
    why, if the operator account's quota refuses it."""
    deployment = await client.read_deployment(flow_run.deployment_id) if flow_run.deployment_id else None
    workflow = deployment.name if deployment else flow_run.name
    try:
        run = await db(actions.do_adopt_flow_run)(
            get_settings().workflow.operator_username, workflow, flow_run.parameters, flow_run.id
        )
    except QuotaExceeded as exc:
        await propose_state(client, Failed(message=f"not started: {exc}"), flow_run_id=flow_run.id, force=True)
        return None
    return run.id, run.attempt
