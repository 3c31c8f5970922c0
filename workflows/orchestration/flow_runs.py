"""The flow runs that serve the platform's runs, in Prefect's server: created for a run's current
attempt (idempotently: one per attempt) and recorded on its row, named and tagged so that operators
and the worker can tell what each serves, read in pages, and marked cancelling or ended.

Its callers run after Django is set up: the dispatcher thread (`orchestrator.py`), which imports this
module the first time it launches a run, and the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

import httpx
from django.utils import timezone
from prefect.client.orchestration import PrefectClient, SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling, Crashed, Scheduled

from calculations.actions import do_end_workflow_run, do_record_flow_run
from calculations.errors import InvalidInput, InvalidTransition
from calculations.models import Calculation, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.run_kinds import CALCULATION, WORKFLOW_RUN
from calculations.states import RunState
from calculations.workflow_params import check_plain_json
from emgapiv2.config import get_settings

logger = logging.getLogger(__name__)

RUN_TAG = "workflow-run:"  # a flow run's tag naming the workflow run (and ATTEMPT_TAG its attempt) it serves
ATTEMPT_TAG = "attempt:"
RETRIED_STATUSES = frozenset({401, 403, 408, 429})  # Prefect's 4xx answers that are not a refusal
PAGE = 200  # the most flow runs Prefect's API answers per request

_deployment_ids: dict[str, UUID] = {}


def flow_run_name(calculation_id: UUID) -> str:
    """Operators find a calculation's flow run in the Prefect UI by this name."""
    return f"calc-{calculation_id}"


def workflow_run_tags(flow_run_tags: list[str]) -> tuple[UUID, int] | None:
    """(workflow run id, attempt) a flow run serves, from its tags; None for a calculation's."""
    run = next((tag.removeprefix(RUN_TAG) for tag in flow_run_tags if tag.startswith(RUN_TAG)), None)
    attempt = next((tag.removeprefix(ATTEMPT_TAG) for tag in flow_run_tags if tag.startswith(ATTEMPT_TAG)), None)
    if run is None or attempt is None or not attempt.isdigit():
        return None
    return UUID(run), int(attempt)


def _calculation_deployment_id(client: SyncPrefectClient) -> UUID:
    name = get_settings().prefect.deployment
    if name not in _deployment_ids:
        _deployment_ids[name] = client.read_deployment_by_name(name).id
    return _deployment_ids[name]


def create_calculation_flow_run(client: SyncPrefectClient, calculation_id: UUID) -> UUID | None:
    """Create (idempotently) the flow run of the calculation's current attempt and record it."""
    row = (
        Calculation.objects.filter(id=calculation_id)
        .values("attempt", "state", "flow_run_id", "not_before", "tool", "backend")
        .first()
    )
    if row is None or row["state"] != RunState.QUEUED or row["flow_run_id"] is not None:
        return None
    # a retry waits out its backoff as a flow run scheduled for later, visible in the Prefect UI
    not_before = row["not_before"]
    flow_run = client.create_flow_run_from_deployment(
        _calculation_deployment_id(client),
        parameters={"calculation_id": str(calculation_id)},
        idempotency_key=f"{calculation_id}:{row['attempt']}",
        name=flow_run_name(calculation_id),
        tags=[f"tool:{row['tool']}", f"backend:{row['backend'] or 'local'}"],  # the Runs page filters by them
        state=Scheduled(scheduled_time=not_before) if not_before and not_before > timezone.now() else None,
    )
    do_record_flow_run(CALCULATION, calculation_id, row["attempt"], flow_run.id)
    return flow_run.id


def _is_refusal(status: int) -> bool:
    """A 4xx answer refuses the request itself (its parameters, a deployment gone): sent again, it
    would be refused again. 401/403 (the platform's own credentials), 408 and 429 (Prefect busy) are
    retried, as an unreachable Prefect is."""
    return 400 <= status < 500 and status not in RETRIED_STATUSES


def _end_refused(workflow_run_id: UUID, attempt: int, reason: str) -> None:
    """The run cannot start: SYSTEM_ERROR (never retried), its quota slot freed."""
    try:
        do_end_workflow_run(workflow_run_id, attempt, AttemptEnd.LAUNCH_REFUSED, message=reason, actor="dispatcher")
    except InvalidTransition:
        pass  # it ended meanwhile: canceled, or refused by another process's dispatcher


def create_workflow_flow_run(client: SyncPrefectClient, workflow_run_id: UUID) -> UUID | None:
    """Create (idempotently) the flow run of the workflow run's current attempt and record it.

    A run Prefect refuses (a workflow no longer deployed, parameters its server rejects) ends
    SYSTEM_ERROR at once, saying so but not repeating Prefect's answer, which can name its server's
    variables: that goes to the log, once. An unreachable Prefect raises (the run stays QUEUED and
    the reconciler dispatches it again)."""
    row = WorkflowRun.objects.filter(id=workflow_run_id).values("attempt", "state", "flow_run_id", "workflow", "params")
    found = row.first()
    if found is None or found["state"] != RunState.QUEUED or found["flow_run_id"] is not None:
        return None
    attempt, workflow = found["attempt"], found["workflow"]
    try:
        check_plain_json(found["params"], "params")  # (the API checks this; a run stored before it did not)
        deployment = client.read_deployment_by_name(f"{workflow}/{workflow}")  # (`task deploy-flow` names it so)
        flow_run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters=found["params"],
            idempotency_key=f"workflow-run:{workflow_run_id}:{attempt}",
            name=f"wf-{workflow_run_id}",
            tags=[f"{RUN_TAG}{workflow_run_id}", f"{ATTEMPT_TAG}{attempt}"],
        )
    except InvalidInput as exc:
        _end_refused(workflow_run_id, attempt, f"its parameters cannot be sent to Prefect: {exc}")
        return None
    except ObjectNotFound:
        _end_refused(workflow_run_id, attempt, f"workflow {workflow!r} is no longer deployed")
        return None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if not _is_refusal(status):
            raise
        logger.warning(
            "Prefect refused the flow run of workflow run %s (HTTP %s): %s",
            workflow_run_id, status, exc.response.text[:2000],
        )  # fmt: skip
        _end_refused(
            workflow_run_id,
            attempt,
            f"Prefect refused to create its flow run (HTTP {status}): its parameters do not fit the workflow "
            "as deployed now. Operators find Prefect's answer in the platform's log.",
        )
        return None
    do_record_flow_run(WORKFLOW_RUN, workflow_run_id, attempt, flow_run.id)
    return flow_run.id


# how a flow run is created for each kind of run (`calculations.run_kinds`)
CREATE_FLOW_RUN: dict[str, Callable[[SyncPrefectClient, UUID], UUID | None]] = {
    CALCULATION.name: create_calculation_flow_run,
    WORKFLOW_RUN.name: create_workflow_flow_run,
}


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
