"""Look-ups that enforce visibility: another user's object answers exactly as a missing one (404)."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from calculations.errors import NotFound
from calculations.models import Calculation, File, Upload, WorkflowRun


def access_file_by_id(user_id: int, file_id: UUID) -> File:
    try:
        return File.objects.get(id=file_id, owner_id=user_id)
    except File.DoesNotExist:
        raise NotFound(f"file {file_id} not found") from None


def access_calculation_by_id(
    user_id: int, calculation_id: UUID, *, queryset: QuerySet[Calculation] | None = None
) -> Calculation:
    """The user's calculation (from `queryset`, e.g. one with its prefetches: one query in all)."""
    found = (queryset if queryset is not None else Calculation.objects).filter(id=calculation_id, owner_id=user_id)
    calc = found.first()
    if calc is None:
        raise NotFound(f"calculation {calculation_id} not found")
    return calc


def access_workflow_run_by_id(
    user_id: int, workflow_run_id: UUID, *, queryset: QuerySet[WorkflowRun] | None = None
) -> WorkflowRun:
    found = (queryset if queryset is not None else WorkflowRun.objects).filter(id=workflow_run_id, owner_id=user_id)
    run = found.first()
    if run is None:
        raise NotFound(f"workflow run {workflow_run_id} not found")
    return run


def access_upload_by_id(user_id: int, upload_id: UUID, *, for_update: bool = False) -> Upload:
    """The user's presigned upload (`for_update`: its row locked, inside a transaction)."""
    found = Upload.objects.select_for_update() if for_update else Upload.objects
    upload = found.filter(id=upload_id, owner_id=user_id).first()
    if upload is None:
        raise NotFound(f"upload {upload_id} not found")
    return upload
