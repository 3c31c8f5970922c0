"""Django admin: read-mostly views for operators. State changes go through the actions only."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from calculations.actions import do_request_cancel
from calculations.errors import InvalidTransition
from calculations.models import ApiToken, Calculation, CalculationEvent, CalculationInput, File, UserQuota


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


@admin.register(Calculation)
class CalculationAdmin(admin.ModelAdmin):
    list_display = ["id", "tool", "state", "owner", "attempt", "cached_from", "created_at", "finished_at"]
    list_filter = ["state", "tool", "backend"]
    search_fields = ["id", "flow_run_id", "cache_key"]
    inlines = [CalculationInputInline, CalculationEventInline]
    actions = ["cancel"]

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


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "created_at", "last_used_at"]
    readonly_fields = ["token_sha256", "prefix"]


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """Limits of a user's own, where they differ from the deployment's (empty: the deployment's)."""

    list_display = ["user", "max_active_calculations", "storage_bytes"]
    search_fields = ["user__username"]
