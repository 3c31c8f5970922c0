from uuid import UUID

from django.db.models import F, Prefetch, QuerySet
from ninja import Query, Router
from ninja.pagination import paginate

from calculations.actions import access_calculation_by_id, check_verify_rerun, do_request_cancel, user_actor
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest
from calculations.errors import InvalidInput
from calculations.logs import read_log_chunk, read_logs
from calculations.models import Calculation, CalculationInput, File
from calculations.schemas import (
    CalculationDetailOut,
    CalculationFilters,
    CalculationOut,
    ErrorOut,
    LogChunkOut,
    LogsOut,
    LogsQuery,
)

router = Router(tags=["calculations"])


# what the schema reads of the related rows, unordered (the schema orders outputs itself): polling a
# calculation is the API's hottest path, and ORM query building is most of its cost
_INPUTS = Prefetch(
    "inputs", queryset=CalculationInput.objects.order_by().only("id", "calculation_id", "role", "file_id")
)
_OUTPUTS = Prefetch(
    "output_files", queryset=File.objects.order_by().only("id", "produced_by_id", "output_role", "name")
)


def _visible(request: AuthedRequest) -> QuerySet[Calculation]:
    return (
        Calculation.objects.filter(owner_id=request.auth.id)
        .annotate(cached_from_owner_id=F("cached_from__owner_id"))
        .prefetch_related(_INPUTS, _OUTPUTS)
    )


@router.get("", response=list[CalculationOut], operation_id="list_calculations")
@paginate(BoundedLimitOffsetPagination)
def list_calculations(request: AuthedRequest, filters: Query[CalculationFilters]) -> QuerySet[Calculation]:
    """Your calculations, newest first; filter by `state` and `tool`."""
    return filters.filter(_visible(request))


@router.get("/{calculation_id}", response={200: CalculationDetailOut, 404: ErrorOut}, operation_id="get_calculation")
def get_calculation(request: AuthedRequest, calculation_id: UUID) -> Calculation:
    """A calculation, with who asked it to stop (`canceled_by`, `canceled_at`) if anyone did."""
    return access_calculation_by_id(request.auth.id, calculation_id, queryset=_visible(request).order_by())


@router.post(
    "/{calculation_id}/cancel",
    response={202: CalculationDetailOut, 404: ErrorOut, 409: ErrorOut},
    operation_id="cancel_calculation",
)
def cancel_calculation(request: AuthedRequest, calculation_id: UUID) -> tuple[int, Calculation]:
    """Stop a calculation: CANCELED at once if it had not started, else CANCELING until its tool is gone."""
    calc = access_calculation_by_id(request.auth.id, calculation_id)
    do_request_cancel(calc.id, actor=user_actor(request.auth.id))
    return 202, _visible(request).get(id=calc.id)


@router.post(
    "/{calculation_id}/rerun",
    response={202: CalculationDetailOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    operation_id="rerun_calculation",
)
def rerun_calculation(request: AuthedRequest, calculation_id: UUID) -> tuple[int, Calculation]:
    """Run an ended calculation again to verify it: the same tool version and image digest, the same
    inputs and parameters, never from the cache, as a new calculation (`rerun_of` names this one).
    Once it ended, its `verdict` says for each output whether it is identical. A 409 says what is gone:
    the tool's version, its image digest, its backend, or an input you deleted."""
    new = check_verify_rerun(request.auth.id, calculation_id)
    return 202, _visible(request).get(id=new.id)


@router.get(
    "/{calculation_id}/logs",
    response={200: LogsOut | LogChunkOut, 404: ErrorOut, 422: ErrorOut},
    operation_id="get_calculation_logs",
)
def get_calculation_logs(
    request: AuthedRequest,
    calculation_id: UUID,
    params: Query[LogsQuery],
) -> LogsOut | LogChunkOut:
    """The tool's stdout and stderr (their ends, if long): live while it runs, stored once it ended.

    With `stream`, that stream from byte `offset` instead, a bounded chunk at a time, with the offset to
    ask for next; to follow a running tool, ask again from `next_offset` until `complete` is true.
    `attempt` reads an earlier attempt's logs (default: the current one)."""
    calc = access_calculation_by_id(request.auth.id, calculation_id)
    if params.stream is None:
        if params.offset or params.attempt is not None:
            raise InvalidInput("offset and attempt need stream=stdout or stream=stderr")
        return read_logs(calc)
    return read_log_chunk(calc, params.stream, params.offset, params.attempt)
