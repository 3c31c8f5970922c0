"""Workflows (design brief §10): the deployed ones, and runs of them. A run is one flow run whose
steps are calculations (GET /calculations/{id} shows each step's `workflow_run` and `step`)."""

from uuid import UUID

from django.db.models import QuerySet
from ninja import Query, Router
from ninja.pagination import paginate

from calculations.actions import (
    access_workflow_run_by_id,
    check_notify,
    check_resume_workflow_run,
    check_verify_workflow_run_rerun,
    do_create_workflow_run,
    do_request_cancel_workflow_run,
    user_actor,
)
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest
from calculations.models import WorkflowRun
from calculations.orchestrator import get_orchestrator
from calculations.run_kinds import WORKFLOW_RUN
from calculations.schemas import (
    ErrorOut,
    ResumeIn,
    WorkflowOut,
    WorkflowRunFilters,
    WorkflowRunIn,
    WorkflowRunOut,
    WorkflowRunProgressOut,
    WorkflowRunSummaryOut,
)
from calculations.workflow_params import check_workflow_params, find_workflow

workflows_router = Router(tags=["workflows"])
runs_router = Router(tags=["workflows"])


def _workflow_out(name: str) -> WorkflowOut:
    info = find_workflow(name)
    return WorkflowOut(name=info.name, description=info.description, parameters_schema=info.parameters_schema)


@workflows_router.get("", response=list[WorkflowOut], operation_id="list_workflows")
def list_workflows(request: AuthedRequest) -> list[WorkflowOut]:
    """The deployed workflows: `pipeline` (a DAG of registered tools, posted as data) and the flows
    ops engineers deployed with `task deploy-flow`."""
    return [
        WorkflowOut(name=info.name, description=info.description, parameters_schema=info.parameters_schema)
        for info in get_orchestrator().workflows()
    ]


@workflows_router.get("/{name}", response={200: WorkflowOut, 404: ErrorOut}, operation_id="get_workflow")
def get_workflow(request: AuthedRequest, name: str) -> WorkflowOut:
    return _workflow_out(name)


@workflows_router.post(
    "/{name}/runs",
    response={202: WorkflowRunOut, 404: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    operation_id="run_workflow",
)
def run_workflow(request: AuthedRequest, name: str, payload: WorkflowRunIn) -> tuple[int, WorkflowRun]:
    """Launch a run: its parameters are checked against the workflow's schema (422 naming the field),
    files they name must be yours (404), and a pipeline's DAG must hold together (422 naming the step).
    With `notify`, a signed event is POSTed to its URL when the run reaches one of its states."""
    workflow = find_workflow(name)
    check_workflow_params(request.auth.id, workflow, payload.params)
    notify = (
        check_notify(request.auth.id, payload.notify.url, payload.notify.events, WORKFLOW_RUN)
        if payload.notify
        else None
    )
    return 202, do_create_workflow_run(request.auth.id, workflow.name, payload.params, notify=notify)


def _visible(request: AuthedRequest) -> QuerySet[WorkflowRun]:
    return WorkflowRun.objects.filter(owner_id=request.auth.id)


@runs_router.get("", response=list[WorkflowRunSummaryOut], operation_id="list_workflow_runs")
@paginate(BoundedLimitOffsetPagination)
def list_workflow_runs(request: AuthedRequest, filters: Query[WorkflowRunFilters]) -> QuerySet[WorkflowRun]:
    """Your workflow runs, newest first; filter by `state` and `workflow`."""
    return filters.filter(_visible(request))


@runs_router.get("/{workflow_run_id}", response={200: WorkflowRunOut, 404: ErrorOut}, operation_id="get_workflow_run")
def get_workflow_run(request: AuthedRequest, workflow_run_id: UUID) -> WorkflowRun:
    """A run: its steps with their outputs, the steps its plan has yet to create (`pending_steps`), what
    its flow returned (`result`), and who asked it to stop (`canceled_by`, `canceled_at`)."""
    return access_workflow_run_by_id(request.auth.id, workflow_run_id)


@runs_router.get(
    "/{workflow_run_id}/progress",
    response={200: WorkflowRunProgressOut, 404: ErrorOut},
    operation_id="get_workflow_run_progress",
)
def get_workflow_run_progress(request: AuthedRequest, workflow_run_id: UUID) -> WorkflowRun:
    """A run's state and how many of its steps are in each state, without the steps: what to poll while
    following a run (`GET /workflow-runs/{id}` lists every step with its outputs), then read it whole
    once it has ended."""
    return access_workflow_run_by_id(request.auth.id, workflow_run_id)


@runs_router.post(
    "/{workflow_run_id}/cancel",
    response={202: WorkflowRunOut, 404: ErrorOut, 409: ErrorOut},
    operation_id="cancel_workflow_run",
)
def cancel_workflow_run(request: AuthedRequest, workflow_run_id: UUID) -> tuple[int, WorkflowRun]:
    """Stop a run: every step in flight is canceled (processes, containers, Slurm jobs stopped) and no
    new step starts; CANCELED at once if it had not started, else CANCELING until its flow returned."""
    run = access_workflow_run_by_id(request.auth.id, workflow_run_id)
    return 202, do_request_cancel_workflow_run(run.id, actor=user_actor(request.auth.id))


@runs_router.post(
    "/{workflow_run_id}/rerun",
    response={202: WorkflowRunOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    operation_id="rerun_workflow_run",
)
def rerun_workflow_run(request: AuthedRequest, workflow_run_id: UUID) -> tuple[int, WorkflowRun]:
    """Run a COMPLETE workflow run again to verify it: the same workflow and parameters, every step
    at the same tool version and image digest and never from the cache, as a new run (`rerun_of`
    names this one). Once it ended, its `verdict` compares it step by step (matched by name and
    index). A 409 says what is gone: a tool's version, an image digest, an input you deleted, the
    workflow itself."""
    return 202, check_verify_workflow_run_rerun(request.auth.id, workflow_run_id)


@runs_router.post(
    "/{workflow_run_id}/resume",
    response={202: WorkflowRunOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 503: ErrorOut},
    operation_id="resume_workflow_run",
)
def resume_workflow_run(request: AuthedRequest, workflow_run_id: UUID, payload: ResumeIn) -> tuple[int, WorkflowRun]:
    """Give a PAUSED run the input it waits for (as the dashboard's form does). It is checked against
    the form's schema (422 naming the field; unknown keys too), files it names must be yours (404),
    and the run continues (RUNNING). Of concurrent resumes one wins; the others are a 409."""
    return 202, check_resume_workflow_run(request.auth.id, workflow_run_id, payload.input)
