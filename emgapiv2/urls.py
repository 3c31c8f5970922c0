from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from emgapiv2.api import api
from emgapiv2.metrics import metrics_view
from emgapiv2.tes_api import tes_api


@csrf_exempt  # a POST to a wrong path is not found, as for any client of the API (not a CSRF 403)
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """A path under /api/ or /ga4gh/tes/ that no route serves: the APIs' JSON 404, not Django's HTML page."""
    docs = "/ga4gh/tes/v1/docs" if request.path.startswith("/ga4gh/") else "/api/v2/docs"
    return JsonResponse({"detail": f"not found: no such path in this API (its routes: {docs})"}, status=404)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view),  # Prometheus, with the metrics token (emgapiv2/metrics.py)
    # before each API: its root would raise Django's HTML 404 (or, with DEBUG, redirect to its docs)
    path("api/v2/", api_not_found),
    path("api/v2/", api.urls),
    path("ga4gh/tes/v1/", api_not_found),
    path("ga4gh/tes/v1/", tes_api.urls),
    re_path(r"^(?:api|ga4gh/tes)(?:/|$)", api_not_found),
]
