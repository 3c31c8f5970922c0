"""The NinjaAPI at /api/v2: routers, auth, and the one mapping from domain errors to HTTP."""

from typing import Any

from django.db import DataError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from calculations.api.calculations import router as calculations_router
from calculations.api.crates import calculation_crates_router, crates_router, workflow_run_crates_router
from calculations.api.files import router as files_router
from calculations.api.health import router as health_router
from calculations.api.notifications import notifications_router, users_router
from calculations.api.tools import router as tools_router
from calculations.api.uploads import router as uploads_router
from calculations.api.workflows import runs_router as workflow_runs_router
from calculations.api.workflows import workflows_router
from calculations.auth import TokenAuth
from calculations.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ManyInvalidInputs,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from calculations.storage import StorageError
from emgapiv2.config import get_settings
from emgapiv2.middleware import parsed_json


class BoundedJsonParser(Parser):
    """Reuses the body that RequestBoundsMiddleware parsed (and bounded) instead of parsing it again."""

    def parse_body(self, request: HttpRequest) -> Any:
        return parsed_json(request)


def make_api(*, title: str, version: str, description: str, namespace: str, invalid_status: int = 422) -> NinjaAPI:
    """An API of the platform: bearer tokens, bounded JSON bodies, and the one error mapping."""
    made = NinjaAPI(
        title=title,
        version=version,
        description=description,
        auth=TokenAuth(),
        urls_namespace=namespace,
        parser=BoundedJsonParser(),
    )
    install_error_handlers(made, invalid_status=invalid_status)
    return made


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload"))
    message = "unknown field (misspelled?)" if error.get("type") == "extra_forbidden" else error.get("msg", "invalid")
    return f"{location}: {message}" if location else str(message)


def install_error_handlers(target: NinjaAPI, *, invalid_status: int = 422) -> None:
    """The one mapping from domain errors to HTTP, for each API (TES answers a wrong request 400)."""

    def _error(request: HttpRequest, status: int, detail: str, **extra: object) -> HttpResponse:
        return target.create_response(request, {"detail": detail, **extra}, status=status)

    @target.exception_handler(NotFound)
    def _not_found(request: HttpRequest, exc: NotFound) -> HttpResponse:
        return _error(request, 404, str(exc))

    @target.exception_handler(InvalidInput)
    def _invalid_input(request: HttpRequest, exc: InvalidInput) -> HttpResponse:
        if isinstance(exc, ManyInvalidInputs):
            return _error(request, invalid_status, str(exc), problems=exc.problems)
        return _error(request, invalid_status, str(exc))

    @target.exception_handler(Conflict)
    def _conflict(request: HttpRequest, exc: Conflict) -> HttpResponse:
        return _error(request, 409, str(exc))

    @target.exception_handler(Unavailable)
    def _unavailable(request: HttpRequest, exc: Unavailable) -> HttpResponse:
        response = _error(request, 503, str(exc))
        response["Retry-After"] = "30"
        return response

    @target.exception_handler(StorageError)
    def _storage_error(request: HttpRequest, exc: StorageError) -> HttpResponse:
        return _error(request, 503, f"storage unavailable: {exc}")

    @target.exception_handler(DataError)
    def _unstorable_value(request: HttpRequest, exc: DataError) -> HttpResponse:
        # a value the database cannot hold or compare (a NUL byte, a number out of range): the
        # request's fault, found by schemathesis; the specific checks come first, this is the net
        return _error(
            request, invalid_status, f"a value in the request cannot be stored or searched: {str(exc).splitlines()[0]}"
        )

    @target.exception_handler(QuotaExceeded)
    def _quota_exceeded(request: HttpRequest, exc: QuotaExceeded) -> HttpResponse:
        response = _error(request, exc.status, str(exc))
        if exc.status == 429:
            response["Retry-After"] = "30"
        return response

    @target.exception_handler(Forbidden)
    def _forbidden(request: HttpRequest, exc: Forbidden) -> HttpResponse:
        return _error(request, 403, str(exc))

    @target.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return _error(
            request,
            401,
            "authentication required: send 'Authorization: Bearer <token>' with a valid, unexpired token "
            "(task token USER=…)",
        )

    @target.exception_handler(NinjaValidationError)
    def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        # one readable sentence per problem, e.g. "params.mode: Input should be 'single' or 'meta'"; the
        # first few only: a body with thousands of wrong keys must not get a response thousands long
        limit = get_settings().max_validation_errors
        shown: list[dict[str, Any]] = [
            {key: error[key] for key in ("type", "loc", "msg") if key in error} for error in exc.errors[:limit]
        ]
        detail = "; ".join(_describe(error) for error in shown)
        if len(exc.errors) > limit:
            detail += f"; and {len(exc.errors) - limit} more errors"
        return _error(request, invalid_status, detail, errors=shown, error_count=len(exc.errors))


api = make_api(
    title="EMG calculations API",
    version="2",
    description="Upload files, run registered tools as tracked calculations, fetch their results.",
    namespace="api-v2",
)
api.add_router("/files", files_router)
api.add_router("/uploads", uploads_router)
api.add_router("/tools", tools_router)
api.add_router("/calculations", calculations_router)
api.add_router("/calculations", calculation_crates_router)
api.add_router("/workflows", workflows_router)
api.add_router("/workflow-runs", workflow_runs_router)
api.add_router("/workflow-runs", workflow_run_crates_router)
api.add_router("/crates", crates_router)
api.add_router("/notifications", notifications_router)
api.add_router("/users", users_router)
api.add_router("/health", health_router)
