"""A run's record as an RO-Crate zip (calculations/crates/): GET /calculations/{id}/crate and
/workflow-runs/{id}/crate, streamed as it is made; POST /crates runs one here (actions/imports.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from django.core.exceptions import SuspiciousOperation
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import Query, Router, Schema
from pydantic import Field

from calculations.actions import access_calculation_by_id, access_workflow_run_by_id
from calculations.actions.imports import check_import_crate
from calculations.api.files import content_disposition
from calculations.api.requests import AuthedRequest, one_file_body
from calculations.crates import CrateKind, DataPolicy, crate_chunks, crate_file_name
from calculations.errors import InvalidInput, StorageQuotaExceeded
from calculations.models import Calculation
from calculations.schemas import CrateImportOut, ErrorOut, ProblemsOut
from calculations.states import RunState
from emgapiv2.config import get_settings

calculation_crates_router = Router(tags=["crates"])
workflow_run_crates_router = Router(tags=["crates"])
crates_router = Router(tags=["crates"])

ZIP_RESPONSE: dict[str, Any] = {
    "responses": {
        200: {
            "description": "The RO-Crate as a zip: ro-crate-metadata.json at its root, and the data files it holds.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


class CrateQuery(Schema):
    data: DataPolicy = Field(
        "small",
        description="Which data files the zip holds: none, small (up to EMGAPI_CRATE__MAX_DATA_BYTES in all, the "
        "smallest first) or all. Files left out are listed with their sha256, size and download URL.",
    )


def _zip_response(kind: CrateKind, run_id: UUID, data: DataPolicy) -> StreamingHttpResponse:
    response = StreamingHttpResponse(crate_chunks(kind, run_id, data), content_type="application/zip")
    response["Content-Disposition"] = content_disposition(crate_file_name(kind, run_id))
    return response


@calculation_crates_router.get(
    "/{calculation_id}/crate",
    response={200: None, 404: ErrorOut, 422: ErrorOut},
    operation_id="export_calculation_crate",
    openapi_extra=ZIP_RESPONSE,
)
def export_calculation_crate(
    request: AuthedRequest, calculation_id: UUID, query: Query[CrateQuery]
) -> StreamingHttpResponse:
    """The calculation (or TES task) as a Process Run Crate (Workflow Run RO-Crate 0.5, RO-Crate 1.1):
    its tool, version, image digest, argv, parameters, inputs and outputs (sha256, size), times,
    status and usage; the license and publisher are the platform's."""
    calc = access_calculation_by_id(request.auth.id, calculation_id)
    return _zip_response("calculation", calc.id, query.data)


@workflow_run_crates_router.get(
    "/{workflow_run_id}/crate",
    response={200: None, 404: ErrorOut, 422: ErrorOut},
    operation_id="export_workflow_run_crate",
    openapi_extra=ZIP_RESPONSE,
)
def export_workflow_run_crate(
    request: AuthedRequest, workflow_run_id: UUID, query: Query[CrateQuery]
) -> StreamingHttpResponse:
    """The workflow run as a Workflow Run Crate with each step's tool run (Provenance Run Crate 0.5):
    the workflow (a pipeline's JSON) is its mainEntity, each step a CreateAction under a ControlAction,
    the edges between steps ParameterConnections."""
    run = access_workflow_run_by_id(request.auth.id, workflow_run_id)
    return _zip_response("workflow-run", run.id, query.data)


CRATE_BODY = one_file_body("crate", "The crate's zip.")


def _crate_upload(request: AuthedRequest) -> UploadedFile[bytes]:
    """The one zip of the form, spooled to a file on disk however small (not held in memory, unless an
    Idempotency-Key's fingerprint read the form first); its size was bounded by its Content-Length
    before a byte was read (emgapiv2/middleware.py)."""
    if request.content_type != "multipart/form-data":
        raise InvalidInput(
            f"send the crate as multipart/form-data with one field named 'crate' (this request's Content-Type is "
            f"{request.content_type or 'missing'}), e.g. curl -F crate=@run.crate.zip"
        )
    if not hasattr(request, "_files"):  # (an Idempotency-Key's fingerprint may have read the form already)
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
    try:
        files = request.FILES.getlist("crate")
    except (MultiPartParserError, SuspiciousOperation) as exc:  # (no boundary, too many parts: else an HTML 400)
        raise InvalidInput(
            f"the multipart form cannot be read ({exc or type(exc).__name__}); send one field named 'crate'"
        ) from None
    others = sorted({*request.FILES, *request.POST} - {"crate"})
    if len(files) != 1 or others:
        found = f"; the form has {', '.join(map(repr, others))}" if others else ""
        raise InvalidInput(f"send one field named 'crate' holding the zip{found}")
    upload = files[0]
    limit = get_settings().crate.import_max_zip_bytes
    if upload.size is not None and upload.size > limit:
        raise StorageQuotaExceeded(f"the crate is {upload.size} bytes; the limit is {limit} bytes")
    return upload


@contextmanager
def _on_disk(upload: UploadedFile[bytes]) -> Iterator[Path]:
    """The zip's path on disk: its spool file, or (a small one the fingerprint read into memory) a copy."""
    if isinstance(upload, TemporaryUploadedFile):
        yield Path(upload.temporary_file_path())
        return
    spool = get_settings().spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, prefix="crate-", suffix=".zip") as copy:
        for chunk in upload.chunks():
            copy.write(chunk)
        copy.flush()
        yield Path(copy.name)


@crates_router.post(
    "",
    response={202: CrateImportOut, 413: ErrorOut, 422: ProblemsOut, 429: ErrorOut, 503: ErrorOut},
    operation_id="import_crate",
    openapi_extra=CRATE_BODY,
)
def import_crate(request: AuthedRequest) -> tuple[int, CrateImportOut]:
    """Run a crate exported by an instance of this platform (GET …/crate) here, as your calculation or
    workflow run, and verify it: the same tool versions and image digests (they must be available here),
    the same parameters, and the inputs from the crate or, by sha256, from your own files; never from the
    cache. Once it ended, its `verdict` compares its outputs with those the crate records. A crate that
    cannot be run is a 422 listing every problem (`problems`), and then nothing was created."""
    upload = _crate_upload(request)
    try:
        with _on_disk(upload) as zip_path:
            imported = check_import_crate(request.auth.id, zip_path)
    finally:
        upload.close()  # (its spool file goes with it)
    run = imported.run
    kind: CrateKind = "calculation" if isinstance(run, Calculation) else "workflow-run"
    path = "calculations" if kind == "calculation" else "workflow-runs"
    return 202, CrateImportOut(
        kind=kind,
        id=run.id,
        url=f"{get_settings().public_url.rstrip('/')}/api/v2/{path}/{run.id}",
        state=RunState(run.state),
        source=imported.source,
    )
