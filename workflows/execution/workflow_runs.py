"""A workflow run's attempt, around the flow run that executes it: started (RUNNING as this attempt)
before the flow's code runs, and ended with how the flow run ended (the policy table decides what
follows). The calculation worker does this for the flow runs it runs in-process; the container
runner (`workflows/container_runner.py`) for a Docker-pool flow run in its container."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.policies import AttemptEnd
from calculations.states import RunState
from workflows.db import db
from workflows.execution import workflow_context
from workflows.execution.pauses import CanceledWhilePaused
from workflows.execution.steps import StepFailed
from workflows.orchestration.artifacts import publish_workflow_run
from workflows.orchestration.flow_runs import mark_flow_run_ended

logger = logging.getLogger(__name__)


async def begin_workflow_run(
    flow_run_id: UUID, workflow_run_id: UUID, attempt: int, *, worker: str, remote: bool = False
) -> bool:
    """Mark the workflow run RUNNING as this attempt and give the SDK its context; False (and the
    flow run ended in Prefect) if the run moved on meanwhile (canceled, or resumed elsewhere)."""
    try:
        await db(actions.do_start_workflow_run)(workflow_run_id, attempt, flow_run_id=flow_run_id, worker=worker)
    except InvalidTransition as exc:
        logger.info("not starting flow run %s: %s", flow_run_id, exc)
        await mark_flow_run_ended(flow_run_id, str(exc), canceled=True)
        return False
    workflow_context.enter(workflow_run_id, attempt, flow_run_id, remote=remote)
    return True


def attempt_end(final: Any, error: Any) -> tuple[AttemptEnd, str]:
    """How a flow run's final Prefect state (and the exception it raised, if known) ended the attempt."""
    if final.is_completed():
        return AttemptEnd.SUCCEEDED, ""
    message = str(error) if isinstance(error, BaseException) else (final.message or final.name)
    if isinstance(error, CanceledWhilePaused):
        return AttemptEnd.CANCELED, message
    if isinstance(error, StepFailed) and error.state == RunState.SYSTEM_ERROR:
        return AttemptEnd.STEP_SYSTEM_ERROR, message
    if final.is_crashed():
        return AttemptEnd.PLATFORM_ERROR, message
    return AttemptEnd.FLOW_FAILED, message


async def end_workflow_run(flow_run_id: UUID, workflow_run_id: UUID, attempt: int, final: Any) -> None:
    """Record how the flow run ended on its workflow run, with what the flow returned if it completed
    (the action keeps it if it is JSON and small enough), and end the SDK's context."""
    context = workflow_context.leave(flow_run_id)
    returned: Any = None  # the flow's return value, or the exception it raised
    try:
        returned = await final.result(raise_on_failure=False)
    except Exception:
        level = logging.WARNING if final.is_completed() else logging.DEBUG  # its return value is lost
        logger.log(level, "no result for flow run %s", flow_run_id, exc_info=True)
    end, message = attempt_end(final, None if final.is_completed() else returned)
    if end is not AttemptEnd.SUCCEEDED and context is not None and context.error:
        message = context.error
    result = returned if end is AttemptEnd.SUCCEEDED else None
    try:
        run = await db(actions.do_end_workflow_run)(workflow_run_id, attempt, end, message=message, result=result)
    except InvalidTransition as exc:
        logger.info("workflow run %s attempt %s not recorded: %s", workflow_run_id, attempt, exc)
        return
    await publish_workflow_run(flow_run_id, workflow_run_id)  # its steps' table on the flow run's page
    if run.state == RunState.CANCELED:
        await mark_flow_run_ended(flow_run_id, "workflow run canceled", canceled=True)
