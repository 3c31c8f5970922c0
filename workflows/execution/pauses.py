"""A workflow run that waits for an operator's input (`pause_for_input` in `workflows/sdk.py`): PAUSED
once Prefect's flow run is Paused, with Prefect's form for the input's model in the dashboard; a
resume there, or through the API, continues it with the validated input. A paused run costs its
worker a coroutine that asks Prefect every `workflow.pause_poll_seconds`."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run
from prefect.input.run_input import run_input_subclass_from_type

from calculations import actions
from calculations.models import WorkflowRun
from calculations.states import RunState
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.execution.workflow_context import current

S = RunState
T = TypeVar("T")


class PauseTimedOut(Exception):
    """No one gave the paused run its input in time."""


class CanceledWhilePaused(Exception):
    """The run was canceled while it waited for its input."""


def _canceling(workflow_run_id: UUID) -> bool:
    state = WorkflowRun.objects.filter(id=workflow_run_id).values_list("state", flat=True).first()
    return state in (S.CANCELING, S.CANCELED, None)


async def _until_paused_in_prefect(flow_run_id: UUID, pause: asyncio.Future[Any]) -> None:
    async with get_client() as client:
        while not pause.done():
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_paused():
                return
            await asyncio.sleep(0.2)


async def pause_for_input(model: type[T], description: str = "", *, timeout_seconds: int | None = None) -> T:
    """Wait, PAUSED, for an operator's input of `model` (shown under `description`); PauseTimedOut
    after `timeout_seconds` (default `workflow.pause_timeout_seconds`), CanceledWhilePaused if the
    run is canceled meanwhile."""
    context = current()
    settings = get_settings().workflow
    timeout = timeout_seconds or settings.pause_timeout_seconds
    wanted: Any = run_input_subclass_from_type(model)
    if description:
        wanted = wanted.with_initial_data(description=description)
    pause = asyncio.ensure_future(
        apause_flow_run(wait_for_input=wanted, timeout=timeout, poll_interval=settings.pause_poll_seconds)
    )
    try:
        # PAUSED here only once Prefect's flow run is Paused: a resume the row allows must find it so
        await _until_paused_in_prefect(context.flow_run_id, pause)
        await db(actions.do_pause_workflow_run)(context.workflow_run_id, context.attempt, description=description)
        while not pause.done():
            await asyncio.wait({pause}, timeout=settings.pause_poll_seconds)
            if not pause.done() and await db(_canceling)(context.workflow_run_id):
                raise CanceledWhilePaused(
                    f"workflow run {context.workflow_run_id} was canceled while waiting for input"
                )
        value = pause.result()
    except FlowPauseTimeout:
        first = (description.strip().splitlines() or ["its input"])[0][:200]
        # (Prefect fails the flow run itself when the pause expires, with a message of its own)
        context.error = f"paused for input ({first}) and not resumed within {timeout} s"
        raise PauseTimedOut(context.error) from None
    finally:
        pause.cancel()
    await db(actions.do_unpause_workflow_run)(context.workflow_run_id, context.attempt)
    return cast(T, value)
