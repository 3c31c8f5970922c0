"""GA4GH TES 1.1 at /ga4gh/tes/v1: the same tokens, owner isolation and quotas as /api/v2; a task
is a calculation, so it also shows in /api/v2/calculations."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.db.models import Q, QuerySet
from ninja import Query, Router, Schema
from pydantic import Field

from calculations.actions import do_request_cancel, user_actor
from calculations.actions.tes import BACKEND_PARAMETERS, check_create_tes_task
from calculations.api.requests import AuthedRequest
from calculations.errors import InvalidInput, InvalidTransition, NotFound
from calculations.models import TesTask
from calculations.schemas import ErrorOut
from calculations.states import RunState
from calculations.tes import TES_VERSION
from calculations.tes.schemas import (
    CancelOut,
    CreateTaskOut,
    ListTasksOut,
    ServiceInfoOut,
    ServiceOrganization,
    ServiceType,
    TaskIn,
    TaskOut,
    TesState,
    View,
)
from calculations.tes.views import task_out
from emgapiv2.config import get_settings

router = Router(tags=["TaskService"])
MAX_PAGE_SIZE = 2048
DEFAULT_PAGE_SIZE = 256
STARTED = datetime(2026, 12, 2, tzinfo=UTC)  # when this service first offered TES


class TaskFilters(Schema):
    name_prefix: str | None = Field(None, max_length=256, description="Tasks whose name starts with this.")
    state: TesState | None = None
    tag_key: list[str] = Field([], description="Tasks with these tags (repeat for several, all must match).")
    tag_value: list[str] = Field(
        [], description="The value of the tag_key at the same position; empty or missing: any value."
    )
    page_size: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE, description=f"Default {DEFAULT_PAGE_SIZE}.")
    page_token: str | None = Field(None, max_length=200)
    view: View = View.MINIMAL


def _owned(request: AuthedRequest) -> QuerySet[TesTask]:
    return TesTask.objects.filter(calculation__owner_id=request.auth.id).select_related("calculation")


def _task(request: AuthedRequest, task_id: str) -> TesTask:
    try:
        key = UUID(task_id)
    except ValueError:
        raise NotFound(f"task {task_id!r} not found") from None
    tes = _owned(request).prefetch_related("calculation__output_files").filter(calculation_id=key).first()
    if tes is None:
        raise NotFound(f"task {task_id} not found")
    return tes


def _page_token(created_at: datetime, task_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{task_id}".encode()).decode()


def _after(token: str) -> Q:
    """Tasks after the page that `token` ended (newest first, ties broken by id)."""
    try:
        created_text, id_text = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        created_at, task_id = datetime.fromisoformat(created_text), UUID(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("page_token: not a token this server gave (use next_page_token as it came)") from None
    return Q(calculation__created_at__lt=created_at) | Q(calculation__created_at=created_at, calculation_id__gt=task_id)


def _api_hosts(request: AuthedRequest) -> set[str]:
    return {urlsplit(get_settings().public_url).netloc, request.get_host()}


@router.get("/service-info", response=ServiceInfoOut, operation_id="GetServiceInfo", by_alias=True)
def service_info(request: AuthedRequest) -> ServiceInfoOut:
    """What this TES server is, and what it supports."""
    settings = get_settings()
    storage = ["emgapi://files/", f"{settings.public_url.rstrip('/')}/api/v2/files/"]
    if settings.storage.backend == "s3":
        storage.append("s3://")
    return ServiceInfoOut(
        id="org.emgapi.tes",
        name="EMG calculations: GA4GH TES",
        type=ServiceType(group="org.ga4gh", artifact="tes", version=TES_VERSION),
        description="Tasks run in containers, as tracked calculations (also listed in /api/v2/calculations). Inputs: "
        "emgapi://files/<id>, this API's file URLs, inline content, or s3:// where allowed; outputs are stored as "
        "your files.",
        organization=ServiceOrganization(name="EMG", url=settings.public_url),
        documentationUrl=f"{settings.public_url.rstrip('/')}/ga4gh/tes/v1/docs",
        createdAt=STARTED,
        updatedAt=STARTED,
        version="2",
        storage=storage,
        tesResources_backend_parameters=list(BACKEND_PARAMETERS),
    )


@router.get("/tasks", response={200: ListTasksOut, 400: ErrorOut}, operation_id="ListTasks", exclude_none=True)
def list_tasks(request: AuthedRequest, filters: Query[TaskFilters]) -> ListTasksOut:
    """Your tasks, newest first."""
    if len(filters.tag_value) > len(filters.tag_key):
        raise InvalidInput("tag_value: more values than tag_key parameters")
    tasks = _owned(request)
    if filters.name_prefix:
        tasks = tasks.filter(name__startswith=filters.name_prefix)
    if filters.state:
        tasks = tasks.filter(calculation__state=filters.state)
    for i, key in enumerate(filters.tag_key):
        value = filters.tag_value[i] if i < len(filters.tag_value) else ""
        rows = TesTask.objects.filter(tag_rows__key=key, **({"tag_rows__value": value} if value else {}))
        tasks = tasks.filter(calculation_id__in=rows.values("calculation_id"))
    if filters.page_token:
        tasks = tasks.filter(_after(filters.page_token))
    if filters.view is View.FULL:
        tasks = tasks.prefetch_related("calculation__output_files")
    size = filters.page_size or DEFAULT_PAGE_SIZE
    page = list(tasks.order_by("-calculation__created_at", "calculation_id")[: size + 1])
    token = None
    if len(page) > size:
        page = page[:size]
        token = _page_token(page[-1].calculation.created_at, page[-1].calculation_id)
    return ListTasksOut(tasks=[task_out(tes, filters.view) for tes in page], next_page_token=token)


@router.post(
    "/tasks",
    response={200: CreateTaskOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut},
    operation_id="CreateTask",
)
def create_task(request: AuthedRequest, task: TaskIn) -> CreateTaskOut:
    """Run a task: its executors in order, each in its container, in one set of directories."""
    calc = check_create_tes_task(request.auth.id, task, hosts=_api_hosts(request))
    return CreateTaskOut(id=str(calc.id))


# before GET /tasks/{id}: that pattern would take "<id>:cancel" as an id
@router.post(
    "/tasks/{task_id}:cancel", response={200: CancelOut, 404: ErrorOut, 409: ErrorOut}, operation_id="CancelTask"
)
def cancel_task(request: AuthedRequest, task_id: str) -> CancelOut:
    """Stop a task: CANCELED at once if it had not started, else CANCELING until its container is gone.
    Idempotent, as TES cancels are: a task already CANCELING or CANCELED answers 200 too."""
    calc = _task(request, task_id).calculation
    try:
        do_request_cancel(calc.id, actor=user_actor(request.auth.id))
    except InvalidTransition:
        # its state now, not as read above: a concurrent cancel may have just ended it
        calc.refresh_from_db(fields=["state"])
        if calc.state not in (RunState.CANCELING, RunState.CANCELED):
            raise InvalidTransition(
                f"task {calc.id} has already ended ({calc.state}): there is nothing to cancel"
            ) from None
    return CancelOut()


@router.get("/tasks/{task_id}", response={200: TaskOut, 404: ErrorOut}, operation_id="GetTask", exclude_none=True)
def get_task(request: AuthedRequest, task_id: str, view: View = View.MINIMAL) -> Any:
    return task_out(_task(request, task_id), view)
