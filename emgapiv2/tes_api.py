"""The NinjaAPI at /ga4gh/tes/v1: GA4GH TES 1.1 over the same tokens and error mapping as /api/v2
(a wrong request is a 400 here, as TES clients expect)."""

from calculations.api.tes import router
from emgapiv2.api import make_api

tes_api = make_api(
    title="GA4GH Task Execution Service",
    version="1.1.0",
    description="GA4GH TES 1.1: tasks whose executors run in containers, as tracked calculations.",
    namespace="ga4gh-tes",
    invalid_status=400,
)
tes_api.add_router("", router)
