"""GET /metrics: Prometheus' text format, for the metrics token only; counters move as runs do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from calculations.metrics import metrics_token
from emgapiv2.config import BASE_DIR

pytestmark = pytest.mark.django_db


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token()}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return _samples(response.content.decode())


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic Zm9vOmJhcg==", "Bearer "])
def test_metrics_without_the_token_is_a_401(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"emgapi_" not in response.content


def test_metrics_with_the_token(client: Client) -> None:
    samples = _scrape(client)
    assert samples[("emgapi_queue_depth", (("kind", "calculation"),))] == 0
    assert samples[("emgapi_workers_alive", ())] == 0


def test_under_gunicorn_every_process_counts_into_one_scrape(tmp_path: Path) -> None:
    """Several gunicorn processes (multiprocess mode): whichever answers a scrape counts every request."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:emgapiv2.gunicorn_conf", "emgapiv2.wsgi",
            "--bind", f"127.0.0.1:{port}", "--workers", "2"]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"EMGAPI_PREFECT__API_URL": "http://127.0.0.1:9/api", "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    server = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:  # (another route than the one counted: a probe given up on may still be answered later)
                httpx.get(f"{base}/api/v2/tools", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
        token = {"Authorization": f"Bearer {metrics_token()}"}
        assert httpx.get(f"{base}/metrics").status_code == 401
        key = ("emgapi_http_request_duration_seconds_count", (("method", "GET"), ("route", "api/v2/files"),
                                                               ("status", "401")))  # fmt: skip
        before = _samples(httpx.get(f"{base}/metrics", headers=token).text).get(key, 0.0)
        for _ in range(30):  # a new connection each: the processes share them out
            assert httpx.get(f"{base}/api/v2/files").status_code == 401
        for _ in range(6):
            scrape = httpx.get(f"{base}/metrics", headers=token)
            assert scrape.status_code == 200
            assert _samples(scrape.text)[key] == before + 30
    finally:
        server.send_signal(signal.SIGINT)  # a quick shutdown (SIGTERM waits for the workers' graceful timeout)
        server.wait(10)


def test_requests_are_timed_by_route_pattern_never_by_path(client: Client) -> None:
    ids = [str(uuid4()) for _ in range(3)]
    for calculation_id in ids:
        assert client.get(f"/api/v2/calculations/{calculation_id}").status_code == 401
    client.get("/no/such/page")
    routes = {labels for name, labels in _scrape(client) if name == "emgapi_http_request_duration_seconds_count"}
    seen = {dict(labels)["route"] for labels in routes}
    assert any(route.startswith("api/v2/calculations/<") for route in seen), seen
    assert "unmatched" in seen
    assert not any(calculation_id in route for route in seen for calculation_id in ids)
