"""Cancels asked of Prefect (the dashboard's Cancel button, `prefect flow-run cancel`) become cancels
of the platform's rows, through the actions: the calculation of a `calc-<id>` flow run, or the
workflow run (and every step in flight) of a workflow's flow run. The worker's in-flight watcher then
stops the tools, and the flow run ends Cancelled.

Prefect marks a running flow run CANCELLING and leaves the rest to its worker. One query per
`worker.cancel_check_seconds` covers every flow run a worker runs: no thread or websocket per run.
A flow run cancelled before it started goes straight to CANCELLED; the reconciler cancels its row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import NoReturn
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType

from calculations import actions
from calculations.errors import InvalidTransition, NotFound
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.orchestration.flow_runs import read_flow_runs
from workflows.orchestration.orchestrator import workflow_run_tags
from workflows.worker.periodic import every

logger = logging.getLogger(__name__)
OPERATOR_ACTOR = "operator (Prefect: flow run cancelled)"


def cancel_rows_of(flow_run: FlowRun) -> str | None:
    """Cancel what the flow run executes; return what was asked to stop (None: nothing was). DB thread."""
    try:
        workflow_run = workflow_run_tags(list(flow_run.tags or []))
        if workflow_run is not None:
            actions.do_request_cancel_workflow_run(workflow_run[0], actor=OPERATOR_ACTOR)
            return f"workflow run {workflow_run[0]}"
        calculation_id = (flow_run.parameters or {}).get("calculation_id")
        if calculation_id is None:
            return None
        actions.do_request_cancel(UUID(str(calculation_id)), actor=OPERATOR_ACTOR)
        return f"calculation {calculation_id}"
    except (InvalidTransition, NotFound, ValueError) as exc:
        logger.info("flow run %s cancelled in Prefect: %s", flow_run.id, exc)
        return None


async def honour_prefect_cancels(client: PrefectClient, flow_run_ids: list[UUID], seen: set[UUID]) -> int:
    """Cancel the rows of the flow runs (among these) that Prefect was asked to cancel; `seen`
    remembers those already handled, so each is acted on once."""
    acted = 0
    for flow_run in await read_flow_runs(client, flow_run_ids, states=[StateType.CANCELLING]):
        if flow_run.id in seen:
            continue
        seen.add(flow_run.id)
        if what := await db(cancel_rows_of)(flow_run):
            acted += 1
            logger.warning("flow run %s was cancelled in Prefect: %s is canceled", flow_run.id, what)
    return acted


async def serve(client: PrefectClient, running: Callable[[], Collection[UUID]]) -> NoReturn:
    """Every `worker.cancel_check_seconds`, the cancels asked of Prefect for the flow runs this worker
    runs (`running()`), in one query."""
    seen: set[UUID] = set()

    async def one_pass() -> None:
        flow_run_ids = list(running())
        if flow_run_ids:
            await honour_prefect_cancels(client, flow_run_ids, seen)
        seen.intersection_update(flow_run_ids)

    await every(
        get_settings().worker.cancel_check_seconds, one_pass, failed="could not check Prefect for cancelled flow runs",
        logger=logger, level=logging.WARNING,
    )  # fmt: skip
