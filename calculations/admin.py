"""Django admin: read-mostly views for operators. State changes go through the actions only.

A calculation's page shows what an operator needs to trust or debug it: its provenance as tables,
its outputs, the tails of its logs, its events with each actor's username, its reruns. Outputs and
whole logs download through admin views (staff sessions only, streamed); the dashboard's artifacts
link here (`calculations/admin_links.py`)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from pydantic import ValidationError

from calculations.actions import do_request_cancel, do_request_cancel_workflow_run
from calculations.actions.reruns import check_rerun_calculation
from calculations.actions.transitions import staff_actor
from calculations.actors import describe_actor
from calculations.admin_links import admin_path
from calculations.api.files import content_disposition
from calculations.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound, QuotaExceeded
from calculations.logs import STREAMS, Stream, iter_log, read_log_tail
from calculations.models import (
    ApiToken,
    Calculation,
    CalculationEvent,
    CalculationInput,
    File,
    TesTask,
    Upload,
    UserQuota,
    WorkflowRun,
    WorkflowRunEvent,
)
from calculations.programs import TES_RUNNER, get_program
from calculations.provenance import AttemptRecord, Provenance
from calculations.storage import get_storage
from calculations.tools import UnknownTool
from calculations.usage import requested_vs_used
from calculations.verdicts import Verdict
from emgapiv2.config import get_settings


def flow_run_link(flow_run_id: Any) -> str:
    """The run's page in the Prefect dashboard."""
    if flow_run_id is None:
        return "-"
    url = f"{get_settings().prefect.ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, str(flow_run_id)[:8])


def _staff(request: HttpRequest) -> str:
    """The actor of what a staff member does here (the admin serves only signed-in staff)."""
    if request.user.pk is None:
        raise PermissionDenied
    return staff_actor(request.user.pk)


def _stream_download(chunks: Iterator[bytes], content_type: str, disposition: str) -> StreamingHttpResponse:
    # the first chunk is read before the response starts: storage that fails here is an error page,
    # not a download cut off after its headers
    first = next(chunks, b"")
    response = StreamingHttpResponse(chain([first], chunks), content_type=content_type)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CalculationInputInline(ReadOnlyInline):
    model = CalculationInput


class EventInline(ReadOnlyInline):
    """A run's state changes, each actor by username."""

    fields = ["created_at", "attempt", "from_state", "to_state", "who", "reason"]
    readonly_fields = ["created_at", "who"]

    @admin.display(description="actor")
    def who(self, event: CalculationEvent | WorkflowRunEvent) -> str:
        return describe_actor(event.actor)


class CalculationEventInline(EventInline):
    model = CalculationEvent


class TesTaskInline(admin.StackedInline):
    """A GA4GH TES task's name, tags, the task as accepted and its log per attempt."""

    model = TesTask
    extra = 0
    can_delete = False
    readonly_fields = ["name", "description", "tags", "spec", "logs"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _is_tes_task(calc: Calculation) -> bool:
    try:
        return get_program(calc.tool).runner == TES_RUNNER
    except UnknownTool:  # a tool no longer registered
        return False


def _duration(record: Any) -> str:
    if record.started_at is None or record.finished_at is None:
        return ""
    return f"{(record.finished_at - record.started_at).total_seconds():.2f} s"


def provenance_context(calc: Calculation) -> dict[str, Any]:
    """What provenance.html shows of a calculation."""
    try:
        provenance = Provenance.model_validate(calc.provenance)
    except ValidationError:
        return {"invalid": json.dumps(calc.provenance, indent=2)}
    files = {
        row.role: {"name": row.file.name, "url": admin_path("file", row.file.id)}
        for row in calc.inputs.select_related("file")
        if row.file is not None
    }
    attempts = [
        {
            **record.model_dump(),
            "argv": shlex.join(record.argv) if record.argv else "-",
            "job_details": sorted(record.job_details.items()),
            "usage": sorted(record.resource_usage.items()),
            "given_used": requested_vs_used(record),
            "duration": _duration(record),
        }
        for record in sorted(provenance.attempts, key=lambda r: r.attempt)
    ]
    return {
        "p": provenance,
        "params": [(name, json.dumps(value)) for name, value in sorted(provenance.params.items())],
        "inputs": [(role, sha256, files.get(role)) for role, sha256 in sorted(provenance.inputs.items())],
        "outputs": [(role, sha256) for role, shas in sorted(provenance.outputs.items()) for sha256 in shas],
        "attempts": attempts,
        "current": calc.attempt,
    }


def outputs_html(files: Iterable[File]) -> str:
    rows = [
        {
            "id": file.id,
            "output_role": file.output_role,
            "name": file.name,
            "size": file.size,
            "sha256": file.sha256,
            "page": admin_path("file", file.id),
            "download": reverse("admin:calculations_file_download", args=[file.id]),
        }
        for file in files
    ]
    return render_to_string("admin/calculations/outputs.html", {"files": rows})


def verdict_html(verdict: dict[str, Any] | None) -> str:
    """A verifying rerun's verdict as a small table ("-" for any other run); each step links to its page."""
    if not verdict:
        return "-"
    shown = Verdict.model_validate(verdict).model_dump(mode="json")
    for step in shown["steps"]:
        step["page"] = admin_path("calculation", step["calculation_id"]) if step["calculation_id"] else ""
    return render_to_string("admin/calculations/verdict.html", {"verdict": shown})


def log_tail_html(calc: Calculation, stream: Stream) -> str:
    """The end of one stream of the current attempt (EMGAPI_ADMIN__LOG_TAIL_BYTES), and a link to it whole."""
    limit = get_settings().admin.log_tail_bytes
    text, cut = read_log_tail(calc, stream, limit)
    return render_to_string(
        "admin/calculations/log_tail.html",
        {
            "text": text,
            "cut": cut,
            "limit": limit,
            "stream": stream,
            "attempt": calc.attempt,
            "url": reverse("admin:calculations_calculation_log", args=[calc.id, stream]),
        },
    )


@admin.register(Calculation)
class CalculationAdmin(admin.ModelAdmin):
    list_display = [
        "id", "tool", "state", "owner", "attempt", "memory_use", "cached_from", "flow_run", "created_at", "finished_at",
    ]  # fmt: skip
    list_filter = ["state", "tool", "backend"]
    search_fields = ["id", "flow_run_id", "cache_key"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "tool",
                    "tool_version",
                    "state",
                    "owner",
                    "attempt",
                    "backend",
                    "backend_job_id",
                    "exit_code",
                    "error",
                    "flow_run",
                    "workflow_run",
                    "step",
                    "step_index",
                    "cached_from",
                    "rerun_of",
                    "reruns_list",
                    "created_at",
                    "started_at",
                    "finished_at",
                ]  # fmt: skip
            },
        ),
        ("Outputs", {"fields": ["outputs_table"]}),
        ("Verdict (a rerun that verifies)", {"fields": ["verdict_table"]}),
        ("Logs", {"fields": ["stdout_tail", "stderr_tail"]}),
        ("Provenance", {"fields": ["provenance_table"]}),
    ]
    readonly_fields = [
        "id", "created_at", "flow_run", "reruns_list", "outputs_table", "verdict_table", "stdout_tail",
        "stderr_tail", "provenance_table",
    ]  # fmt: skip
    actions = ["cancel", "rerun"]

    def get_inlines(self, request: HttpRequest, obj: Calculation | None) -> list[type[admin.options.InlineModelAdmin]]:
        """The TES task's section only on a TES task."""
        inlines: list[type[admin.options.InlineModelAdmin]] = [CalculationInputInline, CalculationEventInline]
        return inlines + [TesTaskInline] if obj is not None and _is_tes_task(obj) else inlines

    @admin.display(description="memory used / given")
    def memory_use(self, calc: Calculation) -> str:
        """The current attempt's peak against its grant: a run that asks for far more than it uses shows it."""
        record = next((r for r in calc.provenance.get("attempts", ()) if r.get("attempt") == calc.attempt), None)
        try:
            memory = requested_vs_used(AttemptRecord.model_validate(record))[0]
        except ValidationError:  # no attempt yet
            return "-"
        return f"{memory.used} / {memory.granted}"

    @admin.display(description="flow run (Prefect dashboard)")
    def flow_run(self, calc: Calculation) -> str:
        return flow_run_link(calc.flow_run_id)

    @admin.display(description="reruns")
    def reruns_list(self, calc: Calculation) -> str:
        reruns = calc.reruns.order_by("created_at").values_list("id", "state")
        if not reruns:
            return "-"
        links = format_html_join(
            ", ", '<a href="{}">{}</a> ({})', ((admin_path("calculation", id_), id_, state) for id_, state in reruns)
        )
        return SafeString(links)

    @admin.display(description="outputs")
    def outputs_table(self, calc: Calculation) -> str:
        return outputs_html(File.objects.filter(produced_by=calc).order_by("output_role", "name"))

    @admin.display(description="verdict")
    def verdict_table(self, calc: Calculation) -> str:
        return verdict_html(calc.verdict)

    @admin.display(description="stdout")
    def stdout_tail(self, calc: Calculation) -> str:
        return log_tail_html(calc, "stdout")

    @admin.display(description="stderr")
    def stderr_tail(self, calc: Calculation) -> str:
        return log_tail_html(calc, "stderr")

    @admin.display(description="provenance")
    def provenance_table(self, calc: Calculation) -> str:
        return render_to_string("admin/calculations/provenance.html", provenance_context(calc))

    def get_urls(self) -> list[URLPattern]:
        log = path(
            "<path:object_id>/log/<str:stream>/",
            self.admin_site.admin_view(self.log_view),
            name="calculations_calculation_log",
        )
        return [log, *super().get_urls()]

    def log_view(self, request: HttpRequest, object_id: str, stream: str) -> StreamingHttpResponse:
        """One stream of the current attempt, whole, streamed (staff only: `admin_view`)."""
        calc = self.get_object(request, unquote(object_id))
        if calc is None or stream not in STREAMS:
            raise Http404(f"no calculation {object_id} or no stream {stream!r} (stdout, stderr)")
        if not self.has_view_permission(request, calc):
            raise PermissionDenied
        name = f"{calc.tool}-{calc.id}-attempt{calc.attempt}-{stream}.log"
        chunks = iter_log(calc, "stdout" if stream == "stdout" else "stderr")
        return _stream_download(chunks, "text/plain; charset=utf-8", f'inline; filename="{name}"')

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run's record is kept: only the actions change it (cancel, rerun)

    @admin.action(description="Cancel selected calculations")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Calculation]) -> None:
        for calc in queryset:
            try:
                do_request_cancel(calc.id, actor=_staff(request))
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)

    @admin.action(description="Rerun selected failed or canceled calculations (same inputs and parameters)")
    def rerun(self, request: HttpRequest, queryset: QuerySet[Calculation]) -> None:
        """A new calculation of the same owner and request (`check_rerun_calculation`), by this staff member."""
        for calc in queryset:
            try:
                new = check_rerun_calculation(calc.id, actor=_staff(request))
            except InvalidTransition as exc:
                self.message_user(request, str(exc))
            except (InvalidInput, NotFound, QuotaExceeded, Conflict, Forbidden) as exc:
                self.message_user(request, f"{calc.id}: not rerun: {exc}", messages.WARNING)
            else:
                link = format_html('<a href="{}">{}</a>', admin_path("calculation", new.id), new.id)
                self.message_user(request, format_html("{} rerun as calculation {}", calc.id, link))


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    """A file, its download (through the admin), and, for an output, the calculation that made it
    and the tail of its tool's stderr (where a dashboard artifact's output link lands)."""

    list_display = ["id", "name", "owner", "size", "sha256", "output_role", "created_at"]
    search_fields = ["id", "name", "sha256"]
    fields = [
        "id", "name", "owner", "size", "sha256", "download", "created_at", "output_role", "producer_state",
        "producer_stderr",
    ]  # fmt: skip
    readonly_fields = ["id", "created_at", "download", "producer_state", "producer_stderr"]

    @admin.display(description="content")
    def download(self, file: File) -> str:
        url = reverse("admin:calculations_file_download", args=[file.id])
        return format_html('<a href="{}" download>download {}</a>', url, file.name)

    @admin.display(description="its calculation")
    def producer_state(self, file: File) -> str:
        calc = file.produced_by
        if calc is None:
            return "- (an upload)"
        return format_html(
            '<a href="{}">{} {}</a>: {} (attempt {})',
            admin_path("calculation", calc.id), calc.tool, calc.tool_version, calc.state, calc.attempt,
        )  # fmt: skip

    @admin.display(description="its tool's stderr")
    def producer_stderr(self, file: File) -> str:
        return "-" if file.produced_by is None else log_tail_html(file.produced_by, "stderr")

    def get_urls(self) -> list[URLPattern]:
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="calculations_file_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, object_id: str) -> StreamingHttpResponse:
        """The file's bytes, streamed (staff only: `admin_view`), under its own name."""
        file = self.get_object(request, unquote(object_id))
        if file is None:
            raise Http404(f"no file {object_id}")
        if not self.has_view_permission(request, file):
            raise PermissionDenied
        response = _stream_download(
            get_storage().iter_chunks(file.sha256), "application/octet-stream", content_disposition(file.name)
        )
        response["Content-Length"] = str(file.size)
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # DELETE /api/v2/files/{id} (do_delete_file): it refuses files in use, and frees blobs

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    """Presigned uploads, for operators to see: users abort theirs (DELETE /api/v2/uploads/{id}) and
    the sweeper expires the rest."""

    list_display = ["id", "name", "owner", "size", "state", "created_at", "expires_at", "file"]
    list_filter = ["state"]
    search_fields = ["id", "name", "owner__username"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a row alone would leave its parts in S3: the actions abort uploads


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "created_at", "last_used_at"]
    readonly_fields = ["token_sha256", "prefix"]


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """Limits of a user's own, where they differ from the deployment's (empty: the deployment's)."""

    list_display = ["user", "max_active_calculations", "storage_bytes"]
    search_fields = ["user__username"]


class WorkflowRunEventInline(EventInline):
    model = WorkflowRunEvent


class StepInline(ReadOnlyInline):
    model = Calculation
    fk_name = "workflow_run"
    fields = ["step", "step_index", "tool", "state", "attempt", "error"]
    show_change_link = True


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ["id", "workflow", "state", "owner", "attempt", "flow_run", "created_at", "finished_at"]
    list_filter = ["state", "workflow"]
    search_fields = ["id", "flow_run_id"]
    readonly_fields = ["flow_run", "returned", "reruns_list", "verdict_table"]
    exclude = ["result", "expected_steps", "verdict"]  # shown as `returned`, indented; the verdict as a table
    inlines = [StepInline, WorkflowRunEventInline]
    actions = ["cancel"]

    @admin.display(description="flow run (Prefect dashboard)")
    def flow_run(self, run: WorkflowRun) -> str:
        return flow_run_link(run.flow_run_id)

    @admin.display(description="reruns")
    def reruns_list(self, run: WorkflowRun) -> str:
        reruns = run.reruns.order_by("created_at").values_list("id", "state")
        if not reruns:
            return "-"
        links = format_html_join(
            ", ", '<a href="{}">{}</a> ({})', ((admin_path("workflowrun", id_), id_, state) for id_, state in reruns)
        )
        return SafeString(links)

    @admin.display(description="verdict (a rerun that verifies)")
    def verdict_table(self, run: WorkflowRun) -> str:
        return verdict_html(run.verdict)

    @admin.display(description="result (what the flow returned)")
    def returned(self, run: WorkflowRun) -> str:
        if run.result is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(run.result, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run's record is kept: only the actions change it (cancel)

    @admin.action(description="Cancel selected workflow runs (and every step in flight)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        for run in queryset:
            try:
                do_request_cancel_workflow_run(run.id, actor=_staff(request))
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
