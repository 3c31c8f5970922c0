"""The flow runs that serve the platform's runs, as the worker and the reconciler see them in
Prefect's server: read in pages, and marked cancelling or ended. (Each is created by the dispatcher:
`orchestrator.py`.) Its callers run in the worker, after Django is set up.
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Cancelled, Cancelling, Crashed

logger = logging.getLogger(__name__)

PAGE = 200  # the most flow runs Prefect's API answers per request


async def read_flow_runs(
    client: PrefectClient, ids: list[UUID], *, states: list[StateType] | None = None
) -> list[FlowRun]:
    """The flow runs with these ids (only those in `states`, if given), all of them: the API answers
    at most a page per request, and a run missing from the answer would be taken for a vanished one."""
    found: list[FlowRun] = []
    for start in range(0, len(ids), PAGE):
        chunk = ids[start : start + PAGE]
        in_states = FlowRunFilterState(type=FlowRunFilterStateType(any_=states)) if states else None
        found += await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=in_states), limit=len(chunk)
        )
    return found


def mark_flow_run_cancelling(flow_run_id: UUID) -> None:
    """Mark a flow run cancelled in Prefect so operators see it; best-effort.

    The row's own state (CANCELING) is what the worker acts on, so a failure here changes nothing
    for the user.
    """
    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is None or flow_run.state.is_final() or flow_run.state.is_cancelling():
                return  # (cancelling: asked in Prefect already, e.g. from the dashboard)
            # a run not yet picked up is simply cancelled; a running one is asked to stop
            target: State = Cancelling() if flow_run.state.is_running() else Cancelled()
            client.set_flow_run_state(flow_run_id, target, force=True)
    except Exception:
        logger.warning("could not mark flow run %s cancelled in Prefect", flow_run_id, exc_info=True)


async def mark_flow_run_ended(flow_run_id: UUID | None, reason: str, *, canceled: bool = False) -> None:
    """Tell Prefect a flow run is over that would otherwise show RUNNING for ever (its worker is
    gone, or its run moved on): Crashed, or Cancelled if its run was being canceled."""
    if flow_run_id is None:
        return
    try:
        async with get_client() as client:
            state: State = Cancelled(message=reason) if canceled else Crashed(message=reason)
            await client.set_flow_run_state(flow_run_id, state, force=True)
    except Exception as exc:
        logger.warning("could not mark flow run %s ended: %s", flow_run_id, exc)
