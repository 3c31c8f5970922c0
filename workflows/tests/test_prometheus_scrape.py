"""A real Prometheus (Debian's `prometheus`, which scripts/bootstrap.sh installs) scrapes the platform
during a burst of calculations, with the scrape config deployment/prometheus/ ships (its targets and
token file pointed at this session's API and worker), and its queries agree with what the API reports:
runs by state, the queue's depth, and the p95 of dispatch latency (histogram_quantile over the burst).

The burst is small here (20: the session's one worker, on 2 cores shared); the issue's acceptance burst
of 100 is this test with EMGAPI_TEST_PROMETHEUS_BURST=100 (bench/README.md)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.contrib.auth import get_user_model
from django.utils import timezone

from calculations.actions import do_create_api_token, do_set_user_quota
from calculations.metrics import metrics_token
from calculations.models import Calculation
from emgapiv2.config import BASE_DIR
from workflows.tests.services import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
BURST = int(os.environ.get("EMGAPI_TEST_PROMETHEUS_BURST", "20"))
HELD = 3  # QUEUED runs waiting out a retry's backoff: a queue that stays while Prometheus is asked


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        answer = self.http.get("/api/v1/query", params=params).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def by(self, label: str, expr: str) -> dict[str, float]:
        return {row["metric"].get(label, ""): float(row["value"][1]) for row in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        rows = self.query(expr)
        return float(rows[0]["value"][1]) if rows else None


def write_config(directory: Path, api: str, worker: str) -> Path:
    """The shipped scrape config, pointed at this session's API and worker, scraping every second."""
    shipped = BASE_DIR / "deployment" / "prometheus"
    config = yaml.safe_load((shipped / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    token_file = directory / "token"
    token_file.write_text(metrics_token())
    targets = {"emgapi-api": api, "emgapi-worker": worker}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        job["authorization"]["credentials_file"] = str(token_file)
    shutil.copy(shipped / "alerts.yml", directory)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def prometheus(live_server: Any, calculation_worker: WorkerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    api = live_server.url.removeprefix("http://")
    config = write_config(tmp_path, api, f"127.0.0.1:{calculation_worker.metrics_port}")
    port = _free_port()
    log = tmp_path / "prometheus.log"
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")
        _until(lambda: _answers(server), 30, f"prometheus did not start:\n{log.read_text()[-2000:]}")
        # both targets scraped, with the token, before anything is measured
        _until(lambda: server.by("job", "up") == {"emgapi-api": 1, "emgapi-worker": 1}, 15,
               lambda: f"targets not up: {server.http.get('/api/v1/targets').text[:2000]}")  # fmt: skip
        # the shipped alert rules load in a real Prometheus too
        groups = server.http.get("/api/v1/rules").json()["data"]["groups"]
        assert sum(len(group["rules"]) for group in groups) == 10, groups
        yield server
    finally:
        process.terminate()
        process.wait(10)


def _answers(server: Prometheus) -> bool:
    try:
        return server.http.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def _until(condition: Any, seconds: float, message: Any) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.2)


def _p95(values: list[float]) -> float:
    """Nearest rank: the value histogram_quantile's rank (0.95 × n) falls on."""
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def test_prometheus_agrees_with_the_api_after_a_burst(
    prometheus: Prometheus, live_server: Any, dispatching: None, tmp_path: Path
) -> None:
    do_set_user_quota("scraped", max_active_calculations=BURST + HELD)  # (100 in flight is the default's limit)
    http = httpx.Client(
        base_url=f"{live_server.url}/api/v2", headers={"Authorization": f"Bearer {do_create_api_token('scraped')}"},
        timeout=30,
    )  # fmt: skip
    # runs waiting out a retry's backoff: QUEUED throughout, so the queue is not empty when compared
    owner = get_user_model().objects.get(username="scraped")
    later = timezone.now() + timedelta(hours=1)
    Calculation.objects.bulk_create(
        Calculation(owner=owner, tool="obabel", tool_version="3.1.1", cache_key=f"{index:064x}", attempt=2,
                    not_before=later, provenance={})
        for index in range(HELD)
    )  # fmt: skip
    molecules = http.post("/files", files={"file": ("m.smi", b"CCO ethanol\n")}).json()["id"]
    time.sleep(1.5)  # a scrape of the worker's histogram as it was before the burst
    started = time.time()
    ids = []
    for _ in range(BURST):
        answer = http.post("/tools/obabel/calculations", json={"inputs": {"molecules": molecules}, "params": {},
                                                              "use_cache": False})  # fmt: skip
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    deadline = time.monotonic() + 60 + 3 * BURST
    while True:
        runs = [http.get(f"/calculations/{calc_id}").json() for calc_id in ids]
        if all(run["state"] in TERMINAL for run in runs):
            break
        assert time.monotonic() < deadline, [run["state"] for run in runs]
        time.sleep(0.5)
    assert {run["state"] for run in runs} == {"COMPLETE"}, [run["error"] for run in runs]

    # by state: what the API lists, once Prometheus has scraped the end of the burst
    listed: dict[str, float] = {}
    for state in ("QUEUED", "INITIALIZING", "RUNNING", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
        count = http.get("/calculations", params={"state": state, "limit": 1}).json()["count"]
        if count:
            listed[state] = count
    assert listed == {"QUEUED": HELD, "COMPLETE": BURST}
    by_state = 'sum by (state) (emgapi_runs{kind="calculation"}) > 0'
    _until(lambda: prometheus.by("state", by_state) == listed, 10, lambda: (prometheus.by("state", by_state), listed))
    assert prometheus.scalar('emgapi_queue_depth{kind="calculation"}') == HELD
    # the burst was seen queued while it was (a scrape a second)
    queued_most = prometheus.scalar('max_over_time(emgapi_queue_depth{kind="calculation"}[10m])')
    assert queued_most is not None and HELD < queued_most <= HELD + BURST

    # dispatch latency: the burst's share of the worker's histogram (what it held before subtracted)
    def burst_buckets() -> str:
        buckets = 'emgapi_dispatch_latency_seconds_bucket{kind="calculation",tool="obabel"}'
        before = f"{buckets} offset {math.ceil(time.time() - started)}s"  # the last scrape before the burst
        return f"sum by (le) ({buckets} - ({before} or {buckets} * 0))"

    _until(lambda: prometheus.by("le", burst_buckets()).get("+Inf") == BURST, 10,
           lambda: prometheus.by("le", burst_buckets()))  # fmt: skip
    expr = burst_buckets()
    estimate = prometheus.scalar(f"histogram_quantile(0.95, {expr})")
    latencies = [(_time(run["started_at"]) - _time(run["created_at"])).total_seconds() for run in runs]
    exact = _p95(latencies)
    bounds = sorted(float(le) for le in prometheus.by("le", expr) if le != "+Inf")
    assert estimate is not None
    upper = next(bound for bound in bounds if bound >= estimate)
    lower = max([0.0, *(bound for bound in bounds if bound < upper)])
    # the estimate interpolates within the bucket the 95th percentile fell in: the API's is in it too
    assert lower < exact <= upper, (exact, estimate, sorted(latencies))
    print(f"\nburst of {BURST}: p95 dispatch latency {exact:.3f} s (API), {estimate:.3f} s (Prometheus)")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
