"""The worker's /metrics listener: the token or a 401, its own counters, and a port taken is not fatal."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from calculations.metrics import PREFECT_API_ERRORS, metrics_token
from emgapiv2.config import get_settings
from workflows.worker.metrics_listener import start_metrics_listener


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(get_settings().metrics, "worker_port", _free_port())
    server = start_metrics_listener()
    assert server is not None
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_worker_serves_its_counters_for_the_token_only(listener: str) -> None:
    PREFECT_API_ERRORS.labels("poll").inc()
    assert httpx.get(f"{listener}/metrics").status_code == 401
    assert httpx.get(f"{listener}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = httpx.get(f"{listener}/metrics", headers={"Authorization": f"Bearer {metrics_token()}"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'emgapi_prefect_api_errors_total{operation="poll"}' in answer.text
    assert "process_cpu_seconds_total" in answer.text
    assert "emgapi_queue_depth" not in answer.text  # the database's gauges are the API's alone
    assert httpx.get(f"{listener}/other", headers={"Authorization": f"Bearer {metrics_token()}"}).status_code == 404


def test_a_port_taken_leaves_the_worker_without_metrics_not_stopped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(get_settings().metrics, "worker_port", taken.getsockname()[1])
        assert start_metrics_listener() is None
    assert "EMGAPI_METRICS__WORKER_PORT" in caplog.text


def test_port_zero_is_no_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().metrics, "worker_port", 0)
    assert start_metrics_listener() is None
