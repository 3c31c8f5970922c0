"""Triggering Prefect flow runs for calculations, after their transaction has committed.

A request thread only enqueues the calculation id; one dispatcher thread per process creates the
flow runs. So a slow or unreachable Prefect never slows the API down: a calculation that could
not be dispatched stays QUEUED without a flow run, and the reconciler dispatches it later.
The idempotency key `<id>:<attempt>` makes a repeated dispatch return the existing flow run.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.utils import timezone

from calculations.errors import Conflict, InvalidInput, Unavailable
from calculations.launching import LauncherHealth, WorkflowInfo
from emgapiv2.config import get_settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

logger = logging.getLogger(__name__)

WORKFLOW_TAG = "emgapi-workflow"  # a deployment users may launch (task deploy-flow tags it)
RUN_TAG = "workflow-run:"  # a flow run's tag naming the workflow run (and ATTEMPT_TAG its attempt) it serves
ATTEMPT_TAG = "attempt:"
RETRIED_STATUSES = frozenset({401, 403, 408, 429})  # Prefect's 4xx answers that are not a refusal

# ("calculation" | "workflow-run", id)
_queue: queue.Queue[tuple[str, UUID]] = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_deployment_ids: dict[str, UUID] = {}


def flow_run_name(calculation_id: UUID) -> str:
    """Operators find a calculation's flow run in the Prefect UI by this name."""
    return f"calc-{calculation_id}"


def dispatch_calculation(calculation_id: UUID) -> None:
    """Queue a committed calculation for a flow run (non-blocking)."""
    if get_settings().prefect.dispatch == "off":
        return
    _ensure_thread()
    _queue.put(("calculation", calculation_id))


def dispatch_workflow_run(workflow_run_id: UUID) -> None:
    """Queue a committed workflow run (or its resumed attempt) for a flow run (non-blocking)."""
    if get_settings().prefect.dispatch == "off":
        return
    _ensure_thread()
    _queue.put(("workflow-run", workflow_run_id))


def _ensure_thread() -> None:
    global _thread
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_dispatch_forever, name="calculation-dispatcher", daemon=True)
            _thread.start()


def _deployment_id(client: SyncPrefectClient) -> UUID:
    name = get_settings().prefect.deployment
    if name not in _deployment_ids:
        _deployment_ids[name] = client.read_deployment_by_name(name).id
    return _deployment_ids[name]


def create_flow_run(client: SyncPrefectClient, calculation_id: UUID) -> UUID | None:
    """Create (idempotently) the flow run of the calculation's current attempt and record it."""
    from prefect.states import Scheduled

    from calculations.actions import do_record_flow_run
    from calculations.models import Calculation
    from calculations.run_kinds import CALCULATION
    from calculations.states import CalculationState

    row = (
        Calculation.objects.filter(id=calculation_id)
        .values("attempt", "state", "flow_run_id", "not_before", "tool", "backend")
        .first()
    )
    if row is None or row["state"] != CalculationState.QUEUED or row["flow_run_id"] is not None:
        return None
    # a retry waits out its backoff as a flow run scheduled for later, visible in the Prefect UI
    not_before = row["not_before"]
    flow_run = client.create_flow_run_from_deployment(
        _deployment_id(client),
        parameters={"calculation_id": str(calculation_id)},
        idempotency_key=f"{calculation_id}:{row['attempt']}",
        name=flow_run_name(calculation_id),
        tags=[f"tool:{row['tool']}", f"backend:{row['backend'] or 'local'}"],  # the Runs page filters by them
        state=Scheduled(scheduled_time=not_before) if not_before and not_before > timezone.now() else None,
    )
    do_record_flow_run(CALCULATION, calculation_id, row["attempt"], flow_run.id)
    return flow_run.id


def workflow_deployment_name(workflow: str) -> str:
    """`task deploy-flow` names a workflow's deployment after its flow."""
    return f"{workflow}/{workflow}"


def workflow_run_tags(flow_run_tags: list[str]) -> tuple[UUID, int] | None:
    """(workflow run id, attempt) a flow run serves, from its tags; None for a calculation's."""
    run = next((tag.removeprefix(RUN_TAG) for tag in flow_run_tags if tag.startswith(RUN_TAG)), None)
    attempt = next((tag.removeprefix(ATTEMPT_TAG) for tag in flow_run_tags if tag.startswith(ATTEMPT_TAG)), None)
    if run is None or attempt is None or not attempt.isdigit():
        return None
    return UUID(run), int(attempt)


def _is_refusal(status: int) -> bool:
    """A 4xx answer refuses the request itself (its parameters, a deployment gone): sent again, it
    would be refused again. 401/403 (the platform's own credentials), 408 and 429 (Prefect busy) are
    retried, as an unreachable Prefect is."""
    return 400 <= status < 500 and status not in RETRIED_STATUSES


def _end_refused(workflow_run_id: UUID, attempt: int, reason: str) -> None:
    """The run cannot start: SYSTEM_ERROR (never retried), its quota slot freed."""
    from calculations.actions import do_end_workflow_run
    from calculations.errors import InvalidTransition
    from calculations.policies import AttemptEnd

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
    import httpx
    from prefect.exceptions import ObjectNotFound

    from calculations.actions import do_record_flow_run
    from calculations.errors import InvalidInput
    from calculations.models import WorkflowRun
    from calculations.run_kinds import WORKFLOW_RUN
    from calculations.states import CalculationState
    from calculations.workflow_params import check_plain_json

    row = WorkflowRun.objects.filter(id=workflow_run_id).values("attempt", "state", "flow_run_id", "workflow", "params")
    found = row.first()
    if found is None or found["state"] != CalculationState.QUEUED or found["flow_run_id"] is not None:
        return None
    attempt = found["attempt"]
    try:
        check_plain_json(found["params"], "params")  # (the API checks this; a run stored before it did not)
        deployment = client.read_deployment_by_name(workflow_deployment_name(found["workflow"]))
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
        _end_refused(workflow_run_id, attempt, f"workflow {found['workflow']!r} is no longer deployed")
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


def _create(client: SyncPrefectClient, kind: str, object_id: UUID) -> None:
    if kind == "workflow-run":
        create_workflow_flow_run(client, object_id)
    else:
        create_flow_run(client, object_id)


def _dispatch_forever() -> None:
    from django.db import close_old_connections
    from prefect.client.orchestration import get_client

    while True:
        kind, object_id = _queue.get()
        try:
            with get_client(sync_client=True) as client:
                while True:
                    _create(client, kind, object_id)
                    try:
                        kind, object_id = _queue.get(timeout=1)
                    except queue.Empty:
                        break
        except Exception:
            logger.exception("could not dispatch %s %s; the reconciler will retry", kind, object_id)
        finally:
            try:
                close_old_connections()
            except Exception:
                logger.debug("could not close the dispatcher's database connection", exc_info=True)


def cancel_flow_run(flow_run_id: UUID) -> None:
    """Mark a flow run cancelled in Prefect so operators see it; best-effort.

    The calculation's own state (CANCELING) is what the worker acts on, so a failure here
    changes nothing for the user.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

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


_catalogue: tuple[float, list[WorkflowInfo]] | None = None
_catalogue_lock = threading.Lock()


def deployed_workflows() -> list[WorkflowInfo]:
    """The workflow deployments on the calculation and Docker work pools (tagged by `task deploy-flow`), read
    from Prefect at most every `workflow.deployments_cache_seconds`."""
    global _catalogue
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    settings = get_settings()
    with _catalogue_lock:
        if _catalogue is not None and time.monotonic() - _catalogue[0] < settings.workflow.deployments_cache_seconds:
            return _catalogue[1]
        with get_client(sync_client=True) as client:
            deployments = client.read_deployments(
                deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[WORKFLOW_TAG])),
                work_pool_filter=WorkPoolFilter(
                    name=WorkPoolFilterName(any_=[settings.prefect.work_pool, settings.prefect.docker_work_pool])
                ),
            )
        found = sorted(
            (
                WorkflowInfo(
                    name=deployment.name,
                    description=deployment.description or "",
                    parameters_schema=dict(deployment.parameter_openapi_schema or {}),
                )
                for deployment in deployments
            ),
            key=lambda info: info.name,
        )
        _catalogue = (time.monotonic(), found)
        return found


def paused_input_schema(flow_run_id: UUID) -> dict[str, Any]:
    """The JSON schema Prefect stored for the input a paused flow run waits for (a pause without
    input: an object with no keys). Conflict if the flow run is not paused."""
    from prefect.client.orchestration import get_client

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
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus

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


def prefect_health() -> LauncherHealth:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.api_healthcheck()
    if response is not None:
        return LauncherHealth(ok=False, detail=str(response))
    return LauncherHealth(ok=True, detail=str(client.api_url))


class PrefectLauncher:
    """Calculations launched as Prefect flow runs (`calculations.launching.Launcher`)."""

    name = "prefect"

    def launch(self, kind: str, run_id: UUID) -> None:
        if kind == "workflow run":
            dispatch_workflow_run(run_id)
        else:
            dispatch_calculation(run_id)

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        return paused_input_schema(flow_run_id)

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        resume_flow_run(flow_run_id, run_input)

    def workflows(self) -> list[WorkflowInfo]:
        try:
            return deployed_workflows()
        except Exception as exc:
            logger.warning("could not read the deployed workflows from Prefect", exc_info=True)
            raise Unavailable(f"the workflow catalogue (Prefect) does not answer: {type(exc).__name__}") from None

    def stop_run(self, flow_run_id: UUID) -> None:
        cancel_flow_run(flow_run_id)

    def health(self) -> LauncherHealth:
        return prefect_health()
