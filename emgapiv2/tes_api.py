"""The NinjaAPI at /ga4gh/tes/v1: GA4GH TES 1.1 over the same tokens and error mapping as /api/v2
(a wrong request is a 400 here, as TES clients expect)."""

from ninja import NinjaAPI

from calculations.api.tes import router
from calculations.auth import TokenAuth
from emgapiv2.api import BoundedJsonParser, install_error_handlers

tes_api = NinjaAPI(
    title="GA4GH Task Execution Service",
    version="1.1.0",
    description="GA4GH TES 1.1: tasks whose executors run in containers, as tracked calculations.",
    auth=TokenAuth(),
    urls_namespace="ga4gh-tes",
    parser=BoundedJsonParser(),
)
tes_api.add_router("", router)
install_error_handlers(tes_api, invalid_status=400)
