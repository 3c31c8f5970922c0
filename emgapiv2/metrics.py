"""`GET /metrics` (Prometheus' text format, for a bearer token only) and the middleware timing every
request by its route. The metrics themselves: `calculations/metrics.py`.

Not a route of the JSON API, so not in its OpenAPI schema (nor its schemathesis run): a plain Django
view, whose only input is the Authorization header (tested in emgapiv2/tests/test_metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from calculations.metrics import CONTENT_TYPE, HTTP_LATENCY, exposition, is_authorized

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not is_authorized(request.headers.get("Authorization")):
        response = HttpResponse("metrics need the bearer token (EMGAPI_METRICS__TOKEN)\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(with_database=True), content_type=CONTENT_TYPE)


class RequestMetricsMiddleware:
    """Each request's latency by route pattern (`api/v2/calculations/<uuid:calculation_id>`), method
    and status: never the raw path, whose ids would make a series per object."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = match.route if match is not None and match.route else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        HTTP_LATENCY.labels(route, method, str(response.status_code)).observe(time.perf_counter() - started)
        return response
