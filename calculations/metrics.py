"""Prometheus metrics (`GET /metrics`, deployment/prometheus/): what an operator asks first, cheap to scrape.

Two sources, so that a scrape never reads a row per run:
- counters and histograms, updated where things happen, once the change commits: every state change
  passes `record_event` (`observe_change`), every attempt's end `do_end_attempt` (`observe_attempt_end`),
  every failed call to Prefect its caller (`PREFECT_API_ERRORS`), every request the middleware
  (`emgapiv2/metrics.py`). Each process counts its own: the API's (under gunicorn, its processes
  together: multiprocess mode) and each worker's (its own listener); Prometheus sums them.
- gauges read from the database at scrape time by `DatabaseCollector`, in a few aggregate queries:
  runs by kind, state, tool and backend, the queue and its oldest run, the oldest flow run no worker
  started, workers and their heartbeats, storage held and open uploads. Only the API exports these
  (once, however many workers run). Free disk space (`DiskCollector`) comes from every process.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache

from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Min, Q, Value
from django.db.models.functions import Now
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from calculations.models import Calculation, File, WorkerProcess, WorkflowRun
from calculations.models.uploads import UNFINISHED_UPLOAD_STATES, Upload
from calculations.policies import AttemptEnd
from calculations.states import TERMINAL_STATES, RunState
from emgapiv2.config import get_settings
from emgapiv2.keys import read_or_create_secret

logger = logging.getLogger(__name__)

# seconds: from a fraction of a second (a trivial run on an idle platform) to a day
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SUBMISSIONS = Counter(
    "emgapi_submissions", "Runs submitted, by how they were answered: queued, cache_hit or following (one in "
    "flight).", ["kind", "tool", "outcome"]
)  # fmt: skip
RUNS_FINISHED = Counter(
    "emgapi_runs_finished",
    "Runs that reached a final state (cache hits excepted).",
    ["kind", "tool", "backend", "state"],
)
ATTEMPT_ENDS = Counter(
    "emgapi_attempt_ends", "Calculation attempts ended, by how (AttemptEnd) and the state that followed (QUEUED: "
    "retried).", ["tool", "backend", "end", "next_state"]
)  # fmt: skip
RETRIES = Counter(
    "emgapi_retries", "Attempts retried, by how the failed one ended (AttemptEnd; a workflow run's: resumed).",
    ["kind", "tool", "end"],
)  # fmt: skip
DISPATCH_LATENCY = Histogram(
    "emgapi_dispatch_latency_seconds", "Created to RUNNING, of each run's first attempt (a retry waits its backoff).",
    ["kind", "tool", "backend"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
RUN_DURATION = Histogram(
    "emgapi_run_duration_seconds", "RUNNING to a final state, of a run's last attempt.", ["kind", "tool", "backend"],
    buckets=_DURATION_BUCKETS,
)  # fmt: skip
PREFECT_API_ERRORS = Counter(
    "emgapi_prefect_api_errors", "Calls to the Prefect API that failed (unreachable, or an error answer).",
    ["operation"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "emgapi_http_request_duration_seconds", "API requests, by route pattern (never the raw path), method and status.",
    ["route", "method", "status"], buckets=_HTTP_BUCKETS,
)  # fmt: skip

_RUNNING_STATES = frozenset({RunState.RUNNING, RunState.CANCELING, RunState.PAUSED})
KIND_LABELS = {Calculation: "calculation", WorkflowRun: "workflow_run"}


def _run_labels(run: Calculation | WorkflowRun) -> tuple[str, str, str]:
    if isinstance(run, Calculation):
        return "calculation", run.tool, run.backend
    return "workflow_run", run.workflow, ""


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def observe_change(run: Calculation | WorkflowRun, from_state: str, to_state: str) -> None:
    """Count a change of `run` (made by `record_event`, inside its transaction) once it commits."""
    kind, tool, backend = _run_labels(run)
    updates: list[Callable[[], None]] = []
    if not from_state:  # created
        if isinstance(run, Calculation) and run.cached_from_id is not None:
            outcome = "cache_hit" if to_state == RunState.COMPLETE else "following"
        else:
            outcome = "queued"
        updates.append(SUBMISSIONS.labels(kind, tool, outcome).inc)
    elif to_state == RunState.RUNNING and from_state in (RunState.QUEUED, RunState.INITIALIZING):
        # (not a paused workflow run resumed: it was dispatched once)
        latency = _seconds(run.created_at, run.started_at)
        if run.attempt == 1 and latency is not None:
            updates.append(lambda: DISPATCH_LATENCY.labels(kind, tool, backend).observe(latency))
    elif to_state in TERMINAL_STATES:
        updates.append(RUNS_FINISHED.labels(kind, tool, backend, to_state).inc)
        duration = _seconds(run.started_at, run.finished_at)
        if duration is not None and from_state in _RUNNING_STATES:  # not a cancel before it ran
            updates.append(lambda: RUN_DURATION.labels(kind, tool, backend).observe(duration))
    elif to_state == RunState.QUEUED and kind == "workflow_run":
        updates.append(RETRIES.labels(kind, tool, "resumed").inc)
    for update in updates:
        transaction.on_commit(update)


def observe_attempt_end(calc: Calculation, end: AttemptEnd, next_state: str) -> None:
    """Count how a calculation's attempt ended (inside `do_end_attempt`'s transaction), once it commits;
    `end` by its name in lower case (worker_lost)."""
    how = end.name.lower()
    transaction.on_commit(ATTEMPT_ENDS.labels(calc.tool, calc.backend, how, next_state).inc)
    if next_state == RunState.QUEUED:
        transaction.on_commit(RETRIES.labels("calculation", calc.tool, how).inc)


class DatabaseCollector:
    """Gauges read at scrape time: a handful of aggregate queries, none reading a row per run."""

    def describe(self) -> list[Metric]:
        return []  # registered without a query; collected only when scraped

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("emgapi_database_up", "Whether the scrape could read the database's gauges.")
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    # a parallel plan's workers cost more to start (~15 ms) than they save counting the
                    # runs_by_state index (100,000 runs: 18 ms serial)
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                gauges = list(self._gauges())
        except DatabaseError:
            logger.warning("metrics: the database's gauges could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges

    def _gauges(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("emgapi_runs", "Runs by kind, state, tool and backend.", labels=["kind", "state",
                                 "tool", "backend"])  # fmt: skip
        depth = GaugeMetricFamily("emgapi_queue_depth", "Runs QUEUED (waiting for a worker, a retry's backoff or "
                                  "a slot).", labels=["kind"])  # fmt: skip
        oldest = GaugeMetricFamily("emgapi_queue_oldest_age_seconds", "Age of the oldest QUEUED run (0: none).",
                                   labels=["kind"])  # fmt: skip
        rows, now = _run_counts()
        queued: dict[str, tuple[int, datetime | None]] = {kind: (0, None) for kind in KIND_LABELS.values()}
        for kind, state, tool, backend, count, first in rows:
            runs.add_metric([kind, state, tool, backend], count)
            if state == RunState.QUEUED:
                total, earliest = queued[kind]
                queued[kind] = (total + count, first if earliest is None or first < earliest else earliest)
        for kind, (total, earliest) in queued.items():
            depth.add_metric([kind], total)
            oldest.add_metric([kind], max(0.0, (now - earliest).total_seconds()) if earliest else 0.0)
        yield from (runs, depth, oldest)
        yield _flow_run_waits(now)
        yield from _worker_metrics()
        yield from _storage_metrics()


def _run_counts() -> tuple[list[tuple[str, str, str, str, int, datetime]], datetime]:
    """(kind, state, tool, backend, count, oldest created_at) of every group, and the database's clock."""
    calculations = (
        Calculation.objects.order_by()
        .values("state", "tool", "backend")
        # COUNT(*), not of a column the index lacks: the runs_by_state index alone answers it
        .annotate(kind=Value("calculation"), n=Count("*"), first=Min("created_at"))
        .values_list("kind", "state", "tool", "backend", "n", "first")
    )
    workflow_runs = (
        WorkflowRun.objects.order_by()
        .values("state", "workflow")
        .annotate(kind=Value("workflow_run"), backend=Value(""), n=Count("*"), first=Min("created_at"))
        .values_list("kind", "state", "workflow", "backend", "n", "first")
    )
    # created_at is the creating API process's clock (auto_now_add), as is this one
    return list(calculations.union(workflow_runs, all=True)), timezone.now()


def _flow_run_waits(now: datetime) -> Metric:
    """How long the oldest QUEUED run has had a flow run that no worker started: stuck in Prefect
    (no worker serves its pool, or its flow run was lost), not waiting for a retry's backoff."""
    waits = GaugeMetricFamily(
        "emgapi_flow_run_wait_oldest_seconds",
        "Seconds the oldest QUEUED run with a flow run has waited for a worker to start it (0: none).",
        labels=["kind"],
    )
    due = Q(not_before__isnull=True) | Q(not_before__lte=now)
    waiting = {
        "calculation": Calculation.objects.filter(due, state=RunState.QUEUED, flow_run_id__isnull=False),
        "workflow_run": WorkflowRun.objects.filter(state=RunState.QUEUED, flow_run_id__isnull=False),
    }
    for kind, queryset in waiting.items():
        # updated_at: when it entered QUEUED (recording its flow run does not change it)
        since = queryset.aggregate(since=Min("updated_at"))["since"]
        waits.add_metric([kind], max(0.0, (now - since).total_seconds()) if since else 0.0)
    return waits


class DiskCollector:
    """Free and total bytes of the filesystems the platform writes (data, work directories, blobs),
    in the process that writes them: a statvfs each, no reading of the trees."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily("emgapi_disk_free_bytes", "Bytes free to the platform, by what it keeps there.",
                                 labels=["path"])  # fmt: skip
        size = GaugeMetricFamily("emgapi_disk_size_bytes", "Size of the filesystem, by what the platform keeps there.",
                                 labels=["path"])  # fmt: skip
        settings = get_settings()
        paths = {"data": settings.data_dir, "work": settings.calculations_dir}
        if settings.storage.backend == "filesystem":
            paths["blobs"] = settings.blob_root
        for name, path in paths.items():
            while not path.exists() and path != path.parent:
                path = path.parent  # not made yet: the filesystem it will be made on
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            free.add_metric([name], usage.free)
            size.add_metric([name], usage.total)
        yield free
        yield size


def _worker_metrics() -> Iterator[Metric]:
    alive = GaugeMetricFamily("emgapi_workers_alive", "Workers registered and not ended (stopped or found dead).")
    age = GaugeMetricFamily(
        "emgapi_worker_heartbeat_age_seconds", "Seconds since each live worker's last heartbeat.", labels=["worker"]
    )
    workers = list(
        WorkerProcess.objects.filter(ended_at__isnull=True)
        .annotate(now=Now())
        .values_list("name", "heartbeat_at", "now")
    )
    dead_after = get_settings().worker.dead_after_seconds
    fresh = 0
    for name, heartbeat_at, now in workers:
        seconds = max(0.0, (now - heartbeat_at).total_seconds())
        age.add_metric([name], seconds)
        fresh += seconds <= dead_after
    alive.add_metric([], fresh)
    yield alive
    yield age


def _storage_metrics() -> Iterator[Metric]:
    held = GaugeMetricFamily("emgapi_storage_bytes", "Bytes of the distinct blobs that files hold.")
    uploads = GaugeMetricFamily("emgapi_uploads_open", "Presigned uploads not finished (OPEN or COMPLETING).")
    table = File._meta.db_table
    with connection.cursor() as cursor:
        # a blob is held once however many files (of any users) name it
        cursor.execute(
            f"SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM {table} GROUP BY sha256) AS blobs"  # noqa: S608
        )
        held.add_metric([], float(cursor.fetchone()[0]))
    uploads.add_metric([], Upload.objects.filter(state__in=UNFINISHED_UPLOAD_STATES).count())
    yield held
    yield uploads


def is_multiprocess() -> bool:
    """Under gunicorn (emgapiv2/gunicorn_conf.py), whose processes share their counters through files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


@lru_cache
def _registry(with_database: bool) -> CollectorRegistry:
    registry = CollectorRegistry()
    if is_multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # every process's counters and histograms, summed
    else:
        registry.register(REGISTRY)  # this process's, and its CPU and memory
    registry.register(DiskCollector())
    if with_database:
        registry.register(DatabaseCollector())
    return registry


# the classic text format (names with underscores only), as Prometheus 2.x (Debian's 2.42) reads it
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def exposition(*, with_database: bool) -> bytes:
    """The metrics in Prometheus' text format: this process's (or its gunicorn siblings'), and, for the
    API, the gauges read from the database."""
    return generate_latest(_registry(with_database))


@lru_cache
def metrics_token() -> str:
    """The bearer token a scrape must send: the setting, or the secret made on first start."""
    settings = get_settings()
    if settings.metrics.token is not None:
        return settings.metrics.token.get_secret_value()
    return read_or_create_secret(settings.data_dir, "metrics-token")


def is_authorized(header: str | None) -> bool:
    """Whether an Authorization header carries the metrics token (compared in constant time)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), metrics_token().encode())
