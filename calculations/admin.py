"""Django admin: read-mostly views for operators. State changes go through the actions only."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from calculations.actions import do_request_cancel, do_request_cancel_workflow_run
from calculations.actions.reruns import check_rerun_calculation
from calculations.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound, QuotaExceeded
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
from emgapiv2.config import get_settings


def flow_run_link(flow_run_id: Any) -> str:
    """The run's page in the Prefect dashboard."""
    if flow_run_id is None:
        return "-"
    url = f"{get_settings().prefect.ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, str(flow_run_id)[:8])


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CalculationInputInline(ReadOnlyInline):
    model = CalculationInput


class CalculationEventInline(ReadOnlyInline):
    model = CalculationEvent


class TesTaskInline(admin.StackedInline):
    """A GA4GH TES task's name, tags, the task as accepted and its log per attempt."""

    model = TesTask
    extra = 0
    can_delete = False
    readonly_fields = ["name", "description", "tags", "spec", "logs"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Calculation)
class CalculationAdmin(admin.ModelAdmin):
    list_display = ["id", "tool", "state", "owner", "attempt", "cached_from", "flow_run", "created_at", "finished_at"]
    list_filter = ["state", "tool", "backend"]
    search_fields = ["id", "flow_run_id", "cache_key"]
    readonly_fields = ["flow_run"]
    inlines = [CalculationInputInline, CalculationEventInline, TesTaskInline]
    actions = ["cancel", "rerun"]

    @admin.display(description="flow run (Prefect dashboard)")
    def flow_run(self, calc: Calculation) -> str:
        return flow_run_link(calc.flow_run_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Cancel selected calculations")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Calculation]) -> None:
        for calc in queryset:
            try:
                do_request_cancel(calc.id, actor=f"staff:{request.user.pk}")
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)

    @admin.action(description="Rerun selected failed or canceled calculations (same inputs and parameters)")
    def rerun(self, request: HttpRequest, queryset: QuerySet[Calculation]) -> None:
        """A new calculation of the same owner and request (`check_rerun_calculation`)."""
        for calc in queryset:
            try:
                new = check_rerun_calculation(calc.id)
            except InvalidTransition as exc:
                self.message_user(request, str(exc))
            except (InvalidInput, NotFound, QuotaExceeded, Conflict, Forbidden) as exc:
                self.message_user(request, f"{calc.id}: not rerun: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"{calc.id} rerun as calculation {new.id}")


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "size", "sha256", "output_role", "created_at"]
    search_fields = ["id", "name", "sha256"]

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


class WorkflowRunEventInline(ReadOnlyInline):
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
    readonly_fields = ["flow_run"]
    inlines = [StepInline, WorkflowRunEventInline]
    actions = ["cancel"]

    @admin.display(description="flow run (Prefect dashboard)")
    def flow_run(self, run: WorkflowRun) -> str:
        return flow_run_link(run.flow_run_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Cancel selected workflow runs (and every step in flight)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        for run in queryset:
            try:
                do_request_cancel_workflow_run(run.id, actor=f"staff:{request.user.pk}")
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
