"""The Prefect orchestrator (`calculations.orchestrator.Orchestrator`), registered by
`workflows/apps.py`: how a committed run becomes a flow run, and what the API asks of Prefect (the
workflow catalogue, a paused run's form and its resume, a cancel, the health check).

A request thread only enqueues the run; one dispatcher thread per process creates the flow runs
(`create_flow_run`: one per attempt, named and tagged so that operators and the worker can tell what
each serves, and recorded on the run's row). So a slow or unreachable Prefect never slows the API
down: a run that could not be dispatched stays QUEUED without a flow run, and the reconciler
dispatches it later. The idempotency key makes a repeated dispatch return the existing flow run.

Every API process imports this module when Django starts, and Prefect is a heavy import (~2 s, and
its memory): so the modules that speak to Prefect are imported where they are first needed, in the
dispatcher thread or in the method that calls them, never here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.db import close_old_connections
from django.utils import timezone

from calculations.actions import do_end_workflow_run, do_record_flow_run
from calculations.errors import InvalidInput, InvalidTransition, Unavailable
from calculations.metrics import PREFECT_API_ERRORS
from calculations.models import Calculation, WorkflowRun
from calculations.orchestrator import OrchestratorHealth, WorkflowInfo
from calculations.policies import AttemptEnd
from calculations.run_kinds import BY_NAME, CALCULATION, WORKFLOW_RUN
from calculations.states import RunState
from calculations.workflow_params import check_plain_json
from emgapiv2.config import get_settings
from workflows.orchestration.wakeups import notify_work

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

logger = logging.getLogger(__name__)

RUN_TAG = "workflow-run:"  # a flow run's tag naming the workflow run (and ATTEMPT_TAG its attempt) it serves
ATTEMPT_TAG = "attempt:"
RETRIED_STATUSES = frozenset({401, 403, 408, 429})  # Prefect's 4xx answers that are not a refusal

_deployment_ids: dict[str, UUID] = {}  # run-calculation's: it is never undeployed while the platform runs


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


@dataclass(frozen=True)
class FlowRunRequest:
    """The flow run that serves a run's current attempt, as its kind asks for it."""

    deployment: str  # "<flow>/<deployment>"
    runs: str  # what it runs, in messages: "workflow 'pipeline'"
    parameters: dict[str, Any]
    idempotency_key: str  # one flow run per attempt, however often it is dispatched
    name: str
    tags: list[str]
    scheduled_for: datetime | None = None  # a retry waits out its backoff, visible in the Prefect UI
    cached_deployment: bool = False
    # a request Prefect refuses (4xx) would be refused again: this ends the run, saying why (None: the
    # refusal is raised, and the run stays QUEUED for the reconciler)
    on_refused: Callable[[str], None] | None = None
    unsendable: str = ""  # why its parameters cannot be sent at all


def _is_refusal(status: int) -> bool:
    """A 4xx answer refuses the request itself (its parameters, a deployment gone): sent again, it
    would be refused again. 401/403 (the platform's own credentials), 408 and 429 (Prefect busy) are
    retried, as an unreachable Prefect is."""
    return 400 <= status < 500 and status not in RETRIED_STATUSES


class _Refused(Exception):
    """Prefect cannot run this request as it stands: sent again, it would be refused again."""


def _end_refused(run: WorkflowRun, reason: str) -> None:
    """The run cannot start: SYSTEM_ERROR (never retried), its quota slot freed."""
    try:
        do_end_workflow_run(run.id, run.attempt, AttemptEnd.LAUNCH_REFUSED, message=reason, actor="dispatcher")
    except InvalidTransition:
        pass  # it ended meanwhile: canceled, or refused by another process's dispatcher


def _calculation_request(calc: Calculation) -> FlowRunRequest:
    return FlowRunRequest(
        deployment=get_settings().prefect.deployment,
        runs="run-calculation",
        parameters={"calculation_id": str(calc.id)},
        idempotency_key=f"{calc.id}:{calc.attempt}",
        name=flow_run_name(calc.id),
        tags=[f"tool:{calc.tool}", f"backend:{calc.backend or 'local'}"],  # the Runs page filters by them
        scheduled_for=calc.not_before if calc.not_before and calc.not_before > timezone.now() else None,
        cached_deployment=True,
    )


def _workflow_run_request(run: WorkflowRun) -> FlowRunRequest:
    try:
        check_plain_json(run.params, "params")  # (the API checks this; a run stored before it did not)
        unsendable = ""
    except InvalidInput as exc:
        unsendable = f"its parameters cannot be sent to Prefect: {exc}"
    return FlowRunRequest(
        deployment=f"{run.workflow}/{run.workflow}",  # (`task deploy-flow` names it so)
        runs=f"workflow {run.workflow!r}",
        parameters=run.params,
        idempotency_key=f"workflow-run:{run.id}:{run.attempt}",
        name=f"wf-{run.id}",
        tags=[f"{RUN_TAG}{run.id}", f"{ATTEMPT_TAG}{run.attempt}"],
        on_refused=partial(_end_refused, run),
        unsendable=unsendable,
    )


# what each kind of run (`calculations.run_kinds`) asks of Prefect
_REQUESTS: dict[str, Callable[[Any], FlowRunRequest]] = {
    CALCULATION.name: _calculation_request,
    WORKFLOW_RUN.name: _workflow_run_request,
}


def _deployment_id(client: SyncPrefectClient, request: FlowRunRequest) -> UUID:
    if not request.cached_deployment:
        return client.read_deployment_by_name(request.deployment).id
    if request.deployment not in _deployment_ids:
        _deployment_ids[request.deployment] = client.read_deployment_by_name(request.deployment).id
    return _deployment_ids[request.deployment]


def create_flow_run(client: SyncPrefectClient, kind_name: str, run_id: UUID) -> UUID | None:
    """Create (idempotently) the flow run of the run's current attempt and record it on its row.

    A workflow run Prefect refuses (a workflow no longer deployed, parameters its server rejects) ends
    SYSTEM_ERROR at once, saying so but not repeating Prefect's answer, which can name its server's
    variables: that goes to the log, once. An unreachable Prefect raises (the run stays QUEUED and the
    reconciler dispatches it again); so does a calculation's refusal (run-calculation not deployed:
    the operators' to fix, never the user's fault)."""
    # Prefect and its HTTP client: imported by the dispatcher thread, never by an API process's start (module docstring)
    import httpx
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    kind = BY_NAME[kind_name]
    run = kind.model.objects.filter(id=run_id).first()
    if run is None or run.state != RunState.QUEUED or run.flow_run_id is not None:
        return None
    request = _REQUESTS[kind.name](run)
    try:
        if request.unsendable:
            raise _Refused(request.unsendable)
        try:
            deployment_id = _deployment_id(client, request)
        except ObjectNotFound:
            raise _Refused(f"{request.runs} is no longer deployed") from None
        flow_run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters=request.parameters,
            idempotency_key=request.idempotency_key,
            name=request.name,
            tags=request.tags,
            state=Scheduled(scheduled_time=request.scheduled_for) if request.scheduled_for else None,
        )
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if not _is_refusal(status) or request.on_refused is None:
            raise
        logger.warning(
            "Prefect refused the flow run of %s %s (HTTP %s): %s", kind.name, run_id, status, exc.response.text[:2000]
        )
        request.on_refused(
            f"Prefect refused to create its flow run (HTTP {status}): its parameters do not fit the workflow "
            "as deployed now. Operators find Prefect's answer in the platform's log."
        )
        return None
    except _Refused as refused:
        if request.on_refused is None:
            raise
        request.on_refused(str(refused))
        return None
    do_record_flow_run(kind, run_id, run.attempt, flow_run.id)
    try:
        notify_work(request.scheduled_for)  # the workers wake for it now, or when its backoff ends
    except Exception:  # (the flow run is made and recorded: the workers' poll finds it)
        logger.warning("could not notify the workers of flow run %s", flow_run.id, exc_info=True)
    return flow_run.id


# (kind of run, as `calculations.run_kinds` names it; its id)
_queue: queue.Queue[tuple[str, UUID]] = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def dispatch(kind: str, run_id: UUID) -> None:
    """Queue a committed run (or its next attempt) for a flow run (non-blocking)."""
    global _thread
    if get_settings().prefect.dispatch == "off":
        return
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_dispatch_forever, name="calculation-dispatcher", daemon=True)
            _thread.start()
    _queue.put((kind, run_id))


def _dispatch_forever() -> None:
    # Prefect, imported by this thread when the process first launches a run (module docstring)
    from prefect.client.orchestration import get_client

    # one client for the thread's life, made again after a failure: a new one costs its TLS context
    # (~15 ms of CPU) and a connection, and each API process dispatches only every few requests
    client: SyncPrefectClient | None = None
    while True:
        kind, run_id = _queue.get()
        try:
            if client is None:
                client = get_client(sync_client=True).__enter__()
            while True:
                create_flow_run(client, kind, run_id)
                try:
                    kind, run_id = _queue.get(timeout=1)
                except queue.Empty:
                    break
        except Exception:
            PREFECT_API_ERRORS.labels("create_flow_run").inc()
            logger.exception("could not dispatch %s %s; the reconciler will retry", kind, run_id)
            if client is not None:
                with suppress(Exception):
                    client.__exit__(None, None, None)
                client = None
        finally:
            try:
                close_old_connections()
            except Exception:
                logger.debug("could not close the dispatcher's database connection", exc_info=True)


class PrefectOrchestrator:
    """Runs launched as Prefect flow runs (`calculations.orchestrator.Orchestrator`). Each method that
    speaks to Prefect imports its module when called (Prefect: a heavy import, see above); the
    tests' stand-ins replace those modules' functions."""

    name = "prefect"

    def launch(self, kind: str, run_id: UUID) -> None:
        dispatch(kind, run_id)

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        from workflows.orchestration import paused_runs  # Prefect: heavy, imported when first asked

        return paused_runs.paused_input_schema(flow_run_id)

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        from workflows.orchestration import paused_runs  # Prefect: heavy, imported when first asked

        paused_runs.resume_flow_run(flow_run_id, run_input)

    def workflows(self) -> list[WorkflowInfo]:
        from workflows.orchestration import catalogue  # Prefect: heavy, imported when first asked

        try:
            return catalogue.deployed_workflows()
        except Exception as exc:
            logger.warning("could not read the deployed workflows from Prefect", exc_info=True)
            raise Unavailable(f"the workflow catalogue (Prefect) does not answer: {type(exc).__name__}") from None

    def stop_run(self, flow_run_id: UUID) -> None:
        from workflows.orchestration import flow_runs  # Prefect: heavy, imported when first asked

        flow_runs.mark_flow_run_cancelling(flow_run_id)

    def health(self) -> OrchestratorHealth:
        from prefect.client.orchestration import get_client  # Prefect: heavy, imported when first asked

        with get_client(sync_client=True) as client:
            response = client.api_healthcheck()
        if response is not None:
            return OrchestratorHealth(ok=False, detail=str(response))
        return OrchestratorHealth(ok=True, detail=str(client.api_url))
