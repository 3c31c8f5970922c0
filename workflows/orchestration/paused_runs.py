"""A paused workflow run's flow run, as the API sees it: the form (JSON schema) its pause waits for,
and the resume that gives it the input, as the dashboard's form does. The workflow run's own state
(PAUSED) is the actions'; this only speaks to Prefect."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus

from calculations.errors import Conflict, InvalidInput, Unavailable


def paused_input_schema(flow_run_id: UUID) -> dict[str, Any]:
    """The JSON schema Prefect stored for the input a paused flow run waits for (a pause without
    input: an object with no keys). Conflict if the flow run is not paused."""
    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is None or not flow_run.state.is_paused():
                raise Conflict(f"flow run {flow_run_id} is not paused")
            keyset = flow_run.state.state_details.run_input_keyset
            stored = client.read_flow_run_input(flow_run_id, keyset["schema"]) if keyset else None
    except Conflict:
        raise
    except Exception as exc:
        raise Unavailable(f"Prefect did not give the paused run's form: {type(exc).__name__}") from None
    schema = json.loads(stored) if stored else {"type": "object", "properties": {}}
    return schema if isinstance(schema, dict) else {}


def resume_flow_run(flow_run_id: UUID, run_input: dict[str, Any]) -> None:
    """Resume a paused flow run with its input, as the dashboard's form does; the input is validated
    against the schema the pause stored (InvalidInput with Prefect's reason if it does not fit)."""
    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is None or not flow_run.state.is_paused():
                raise Conflict(f"flow run {flow_run_id} is not paused")
            result = client.resume_flow_run(flow_run_id, run_input=run_input)
    except (Conflict, InvalidInput):
        raise
    except Exception as exc:
        raise Unavailable(f"Prefect did not answer the resume: {type(exc).__name__}") from None
    if result.status == SetStateStatus.REJECT:
        if result.state is not None and result.state.type == StateType.FAILED:
            raise Conflict("the pause timed out: the run can no longer be resumed")
        reason = getattr(result.details, "reason", "") or "refused"
        raise InvalidInput(f"input: {reason}")
