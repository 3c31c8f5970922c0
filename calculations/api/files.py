from itertools import chain
from typing import BinaryIO, cast
from urllib.parse import quote
from uuid import UUID

from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from ninja import Router
from ninja.pagination import paginate

from calculations.actions import access_file_by_id, check_upload_size, do_create_file, do_delete_file
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest, one_file_body
from calculations.errors import InvalidInput
from calculations.models import File
from calculations.schemas import ErrorOut, FileOut
from calculations.storage import get_storage
from calculations.storage.s3 import S3BlobStorage
from emgapiv2.config import get_settings

router = Router(tags=["files"])


UPLOAD_BODY = one_file_body("file", "The file.")


@router.post(
    "",
    response={201: FileOut, 413: ErrorOut, 422: ErrorOut},
    operation_id="upload_file",
    openapi_extra=UPLOAD_BODY,
)
def upload_file(request: AuthedRequest) -> tuple[int, File | ErrorOut]:
    """Upload a file (multipart/form-data, one field named `file`). Identical bytes are stored once."""
    if request.content_type != "multipart/form-data":
        raise InvalidInput(
            f"send the file as multipart/form-data with one field named 'file' (this request's Content-Type is "
            f"{request.content_type or 'missing'}), e.g. curl -F file=@genome.fna"
        )
    files = request.FILES.getlist("file")
    others = sorted({*request.FILES, *request.POST} - {"file"})
    if not files:
        found = f"; the form has {', '.join(map(repr, others))}" if others else ""
        raise InvalidInput(f"no field named 'file' in the form{found}")
    if len(files) > 1:
        raise InvalidInput(f"one file per request: the form has {len(files)} fields named 'file'")
    if others:
        raise InvalidInput(f"unknown form field(s) {', '.join(map(repr, others))}: send only 'file'")
    file = files[0]
    if file.size is not None:
        check_upload_size(file.size)
    if not file.name:
        raise InvalidInput("the uploaded file has no name")
    # an upload is a binary file object (django's File proxies read()); its stub says IO[Any]
    created = do_create_file(request.auth.id, file.name, cast(BinaryIO, file))
    return 201, created


@router.get("", response=list[FileOut], operation_id="list_files")
@paginate(BoundedLimitOffsetPagination)
def list_files(request: AuthedRequest) -> QuerySet[File]:
    """Your files, newest first."""
    return File.objects.filter(owner_id=request.auth.id)


@router.get("/{file_id}", response={200: FileOut, 404: ErrorOut}, operation_id="get_file")
def get_file(request: AuthedRequest, file_id: UUID) -> File:
    return access_file_by_id(request.auth.id, file_id)


@router.delete("/{file_id}", response={204: None, 404: ErrorOut, 409: ErrorOut}, operation_id="delete_file")
def delete_file(request: AuthedRequest, file_id: UUID) -> tuple[int, None]:
    """Delete your file (409 while a calculation in flight reads it). Its bytes stop counting against
    your quota at once, and are erased once no one holds them."""
    do_delete_file(request.auth.id, file_id)
    return 204, None


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback any client reads, and the exact UTF-8 name for those that can."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.api_operation(
    ["GET", "HEAD"],
    "/{file_id}/content",
    response={200: None, 302: None, 404: ErrorOut},
    operation_id="download_file",
)
def download_file(
    request: AuthedRequest, file_id: UUID, redirect: bool = False
) -> HttpResponse | StreamingHttpResponse:
    """The file's bytes, streamed (HEAD: its headers only: size, name, ETag). With `redirect=true` and
    S3 storage, a GET is a 302 to a presigned S3 URL instead, so the bytes do not pass through the
    API; on filesystem storage `redirect` changes nothing."""
    file = access_file_by_id(request.auth.id, file_id)
    storage = get_storage()
    response: HttpResponse | StreamingHttpResponse
    if redirect and request.method == "GET" and isinstance(storage, S3BlobStorage):
        url = storage.presign_download(
            file.sha256, content_disposition(file.name), get_settings().uploads.download_url_seconds
        )
        return HttpResponseRedirect(url)
    if request.method == "HEAD":
        response = HttpResponse(content_type="application/octet-stream")
    else:
        # the first chunk is read before the response starts: storage that fails here is a 503, not a
        # response cut off after its headers
        chunks = storage.iter_chunks(file.sha256)
        first = next(chunks, b"")
        response = StreamingHttpResponse(chain([first], chunks), content_type="application/octet-stream")
    response["Content-Length"] = str(file.size)
    response["Content-Disposition"] = content_disposition(file.name)
    response["ETag"] = f'"{file.sha256}"'
    return response
