"""Schemathesis against the OpenAPI schema, in-process: no generated request may cause a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from calculations.actions import do_create_api_token
from emgapiv2.wsgi import application

# /health answers 503 by design while a dependency (here: Prefect, not started for unit tests) is down
schema = schemathesis.openapi.from_wsgi("/api/v2/openapi.json", application).exclude(path="/api/v2/health")
tes_schema = schemathesis.openapi.from_wsgi("/ga4gh/tes/v1/openapi.json", application)
EXAMPLES = int(os.environ.get("EMGAPI_FUZZ_EXAMPLES", "25"))


@pytest.fixture
def token(db: None) -> Iterator[str]:
    # The app is called directly (not through Django's test client), so the request signals would
    # close the test's database connection, and its transaction, after each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield do_create_api_token("fuzzer")
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_causes_a_server_error(
    case: schemathesis.Case, token: str, workflow_catalogue: object
) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])


# on filesystem storage (above) the presigned routes refuse at once; on S3 they reach S3 itself
@schema.include(path_regex="^/api/v2/(uploads|files/[^/]+/content)").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.s3
def test_no_generated_request_to_the_presigned_routes_on_s3_causes_a_server_error(
    case: schemathesis.Case, token: str, s3_storage: object
) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])


@tes_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_tes_request_causes_a_server_error(case: schemathesis.Case, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
