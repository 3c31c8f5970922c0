"""A run's record as an RO-Crate zip (calculations/crates/): GET /calculations/{id}/crate and
/workflow-runs/{id}/crate, streamed as it is made."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from ninja import Query, Router, Schema
from pydantic import Field

from calculations.actions import access_calculation_by_id, access_workflow_run_by_id
from calculations.api.files import content_disposition
from calculations.api.requests import AuthedRequest
from calculations.crates import CrateKind, DataPolicy, crate_chunks, crate_file_name
from calculations.schemas import ErrorOut

calculation_crates_router = Router(tags=["crates"])
workflow_run_crates_router = Router(tags=["crates"])

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
