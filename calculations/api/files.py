from typing import BinaryIO, cast
from uuid import UUID

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from ninja import File as FileParam
from ninja import Router
from ninja.files import UploadedFile
from ninja.pagination import paginate

from calculations.actions import access_file_by_id, do_create_file
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest
from calculations.errors import InvalidInput
from calculations.models import File
from calculations.schemas import ErrorOut, FileOut
from calculations.storage import get_storage
from emgapiv2.config import get_settings

router = Router(tags=["files"])


@router.post("", response={201: FileOut, 413: ErrorOut, 422: ErrorOut}, operation_id="upload_file")
def upload_file(request: AuthedRequest, file: FileParam[UploadedFile]) -> tuple[int, File | ErrorOut]:
    """Upload a file (multipart field `file`). Identical bytes are stored once."""
    limit = get_settings().max_upload_bytes
    if file.size is not None and file.size > limit:
        return 413, ErrorOut(detail=f"file is {file.size} bytes; the limit is {limit}")
    if not file.name:
        raise InvalidInput("the uploaded file has no name")
    # an upload is a binary file object (django's File proxies read()); its stub says IO[Any]
    created = do_create_file(request.auth.id, file.name, cast(BinaryIO, file), size_hint=file.size)
    return 201, created


@router.get("", response=list[FileOut], operation_id="list_files")
@paginate(BoundedLimitOffsetPagination)
def list_files(request: AuthedRequest) -> QuerySet[File]:
    """Your files, newest first."""
    return File.objects.filter(owner_id=request.auth.id)


@router.get("/{file_id}", response={200: FileOut, 404: ErrorOut}, operation_id="get_file")
def get_file(request: AuthedRequest, file_id: UUID) -> File:
    return access_file_by_id(request.auth.id, file_id)


@router.get("/{file_id}/content", response={200: None, 404: ErrorOut}, operation_id="download_file")
def download_file(request: AuthedRequest, file_id: UUID) -> StreamingHttpResponse:
    """The file's bytes, streamed."""
    file = access_file_by_id(request.auth.id, file_id)
    response = StreamingHttpResponse(get_storage().iter_chunks(file.sha256), content_type="application/octet-stream")
    response["Content-Length"] = str(file.size)
    response["Content-Disposition"] = f'attachment; filename="{file.name}"'
    response["ETag"] = f'"{file.sha256}"'
    return response
