"""Presigned uploads (S3 storage only): the bytes go from the client to S3, never through the API.

1. `POST /uploads` `{name, size, sha256?}` answers a URL per part;
2. the client PUTs each part to its URL (exactly `size` bytes each; in parallel if it likes);
3. `POST /uploads/{id}/complete` verifies the bytes and answers the file (201; 200 if it was
   completed before: a retry is safe). `DELETE /uploads/{id}` aborts.
On filesystem storage these answer 409: `POST /files` is the way to upload there.
"""

from uuid import UUID

from django.db.models import QuerySet
from ninja import Query, Router
from ninja.pagination import paginate

from calculations.actions.access import access_upload_by_id
from calculations.actions.uploads import check_create_upload, do_abort_upload, do_complete_upload, presigned_parts
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest
from calculations.models import File, Upload
from calculations.schemas import (
    ErrorOut,
    FileOut,
    UploadCompleteIn,
    UploadFilters,
    UploadIn,
    UploadOut,
    UploadPartOut,
    UploadSummaryOut,
)

router = Router(tags=["uploads"])


def _out(upload: Upload) -> UploadOut:
    parts = [UploadPartOut(part_number=p.part_number, size=p.size, url=p.url) for p in presigned_parts(upload)]
    return UploadOut.from_orm(upload, context={"parts": parts})


@router.post(
    "",
    response={201: UploadOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    operation_id="create_upload",
)
def create_upload(request: AuthedRequest, payload: UploadIn) -> tuple[int, UploadOut]:
    """Start a presigned upload: PUT each part to its URL, then complete it. S3 storage only (409 otherwise)."""
    sha256 = payload.sha256.lower() if payload.sha256 else None
    return 201, _out(check_create_upload(request.auth.id, payload.name, payload.size, sha256))


@router.get("", response=list[UploadSummaryOut], operation_id="list_uploads")
@paginate(BoundedLimitOffsetPagination)
def list_uploads(request: AuthedRequest, filters: Query[UploadFilters]) -> QuerySet[Upload]:
    """Your uploads, newest first (`state=OPEN`: the unfinished ones, to resume or abort)."""
    return filters.filter(Upload.objects.filter(owner_id=request.auth.id).order_by("-created_at", "id"))


@router.get("/{upload_id}", response={200: UploadOut, 404: ErrorOut, 409: ErrorOut}, operation_id="get_upload")
def get_upload(request: AuthedRequest, upload_id: UUID) -> UploadOut:
    """An upload's state; while it is OPEN, its part URLs again (signed anew, to resume it)."""
    return _out(access_upload_by_id(request.auth.id, upload_id))


@router.post(
    "/{upload_id}/complete",
    response={200: FileOut, 201: FileOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut},
    operation_id="complete_upload",
)
def complete_upload(
    request: AuthedRequest, upload_id: UUID, payload: UploadCompleteIn | None = None
) -> tuple[int, File]:
    """Verify the uploaded bytes (size, and sha256 if declared) and register the file (201). A size or
    sha256 mismatch is a 422 and the upload fails; missing parts are a 409 and it stays open. Completing
    it again answers the same file (200)."""
    parts = None
    if payload is not None and payload.parts is not None:
        parts = [(part.part_number, part.etag) for part in payload.parts]
    file, created = do_complete_upload(request.auth.id, upload_id, parts)
    return (201 if created else 200), file


@router.delete("/{upload_id}", response={204: None, 404: ErrorOut, 409: ErrorOut}, operation_id="abort_upload")
def abort_upload(request: AuthedRequest, upload_id: UUID) -> tuple[int, None]:
    """Abort an unfinished upload; S3 discards its parts (409 if it is complete: delete its file instead)."""
    do_abort_upload(request.auth.id, upload_id)
    return 204, None
