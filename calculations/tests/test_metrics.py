"""The metrics an operator reads: counters and histograms move as runs change state (once the change
commits), and the gauges read at scrape time agree with the rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.db import transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from calculations.actions import JobOutcome, OutputBlob, do_end_attempt, do_mark_running, do_start_calculation
from calculations.metrics import DatabaseCollector, exposition
from calculations.models import Calculation, File, WorkerProcess
from calculations.policies import AttemptEnd
from calculations.states import RunState
from calculations.storage import get_storage
from calculations.tests.factories import make_calculation
from conftest import ApiClient

pytestmark = pytest.mark.django_db
S = RunState
Upload = Callable[[str, bytes], str]
Capture = Callable[..., Any]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def gauges() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in DatabaseCollector().collect()
        for sample in family.samples
    }


def test_a_calculation_counts_its_submission_dispatch_latency_duration_and_cache_hit(
    alice: ApiClient, uploaded: Upload, django_capture_on_commit_callbacks: Capture
) -> None:
    labels = {"kind": "calculation", "tool": "obabel", "backend": "local"}
    before = {
        "queued": value("emgapi_submissions_total", kind="calculation", tool="obabel", outcome="queued"),
        "hits": value("emgapi_submissions_total", kind="calculation", tool="obabel", outcome="cache_hit"),
        "dispatch": value("emgapi_dispatch_latency_seconds_count", **labels),
        "duration": value("emgapi_run_duration_seconds_count", **labels),
        "complete": value("emgapi_runs_finished_total", **labels, state="COMPLETE"),
        "succeeded": value("emgapi_attempt_ends_total", tool="obabel", backend="local", end="succeeded",
                           next_state="COMPLETE"),
    }  # fmt: skip
    file_id = uploaded("m.smi", b"CCO\n")
    with django_capture_on_commit_callbacks(execute=True):
        first = alice.post("/tools/obabel/calculations", {"inputs": {"molecules": file_id}, "params": {}}).json()
    assert (
        value("emgapi_submissions_total", kind="calculation", tool="obabel", outcome="queued") == before["queued"] + 1
    )
    with django_capture_on_commit_callbacks(execute=True):
        do_start_calculation(first["id"], 1, flow_run_id=None, backend="local", host="h", workdir="/w")
        do_mark_running(first["id"], 1, job_id="1", argv=["obabel"], executable=None)
        blob = get_storage().put_path(Path(__file__))
        do_end_attempt(first["id"], 1, AttemptEnd.SUCCEEDED, outputs=[OutputBlob("molecules", "m.sdf", blob.sha256,
                       blob.size)], outcome=JobOutcome(0, {}, None, None))  # fmt: skip
    calc = Calculation.objects.get(id=first["id"])
    assert calc.started_at is not None and calc.finished_at is not None
    assert value("emgapi_dispatch_latency_seconds_count", **labels) == before["dispatch"] + 1
    # the latency observed is the one the API reports: created_at to started_at
    latency = (calc.started_at - calc.created_at).total_seconds()
    assert value("emgapi_dispatch_latency_seconds_bucket", **labels, le="0.1") >= (latency <= 0.1)
    assert value("emgapi_run_duration_seconds_count", **labels) == before["duration"] + 1
    assert value("emgapi_runs_finished_total", **labels, state="COMPLETE") == before["complete"] + 1
    assert value("emgapi_attempt_ends_total", tool="obabel", backend="local", end="succeeded",
                 next_state="COMPLETE") == before["succeeded"] + 1  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        hit = alice.post("/tools/obabel/calculations", {"inputs": {"molecules": file_id}, "params": {}})
    assert hit.status_code == 200 and hit.json()["cached_from"] == first["id"]
    assert (
        value("emgapi_submissions_total", kind="calculation", tool="obabel", outcome="cache_hit") == before["hits"] + 1
    )
    # a cache hit ran nothing: no latency, no duration, no finished run
    assert value("emgapi_dispatch_latency_seconds_count", **labels) == before["dispatch"] + 1
    assert value("emgapi_runs_finished_total", **labels, state="COMPLETE") == before["complete"] + 1


def test_a_retry_is_counted_by_how_the_attempt_ended(django_capture_on_commit_callbacks: Capture) -> None:
    calc = make_calculation(S.RUNNING)
    Calculation.objects.filter(id=calc.id).update(backend="slurm", flow_run_id="00000000-0000-0000-0000-000000000001")
    before = value("emgapi_retries_total", kind="calculation", tool="prodigal", end="worker_lost")
    with django_capture_on_commit_callbacks(execute=True):
        retried = do_end_attempt(calc.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost")
    assert retried.state == S.QUEUED
    assert value("emgapi_retries_total", kind="calculation", tool="prodigal", end="worker_lost") == before + 1
    assert value("emgapi_attempt_ends_total", tool="prodigal", backend="slurm", end="worker_lost", next_state="QUEUED")


def test_a_change_rolled_back_counts_nothing() -> None:
    calc = make_calculation(S.INITIALIZING)
    labels = {"kind": "calculation", "tool": "prodigal", "backend": ""}
    before = value("emgapi_dispatch_latency_seconds_count", **labels)
    with pytest.raises(RuntimeError), transaction.atomic():
        do_mark_running(calc.id, 1, job_id="1", argv=["prodigal"], executable=None)
        raise RuntimeError("the transaction fails after the change")
    assert value("emgapi_dispatch_latency_seconds_count", **labels) == before


def test_the_gauges_agree_with_the_rows(alice_id: int, uploaded: Upload) -> None:
    for state in (S.QUEUED, S.QUEUED, S.RUNNING, S.COMPLETE):
        make_calculation(state)
    oldest = make_calculation(S.QUEUED)
    Calculation.objects.filter(id=oldest.id).update(created_at=timezone.now() - timedelta(seconds=600))
    WorkerProcess.objects.create(name="w1", host="h", pid=1, boot_id="b", heartbeat_at=timezone.now())
    WorkerProcess.objects.create(name="w2", host="h", pid=2, boot_id="b", heartbeat_at=timezone.now() - timedelta(
        hours=1))  # fmt: skip
    WorkerProcess.objects.create(name="w3", host="h", pid=3, boot_id="b", heartbeat_at=timezone.now(),
                                 ended_at=timezone.now())  # fmt: skip
    uploaded("a.smi", b"CCO\n")
    uploaded("same.smi", b"CCO\n")  # the same bytes: one blob
    uploaded("b.smi", b"CCCO\n")

    found = gauges()
    runs = {"kind": "calculation", "tool": "prodigal", "backend": ""}
    assert found[("emgapi_runs", tuple(sorted({**runs, "state": "QUEUED"}.items())))] == 3
    assert found[("emgapi_runs", tuple(sorted({**runs, "state": "RUNNING"}.items())))] == 1
    assert found[("emgapi_queue_depth", (("kind", "calculation"),))] == 3
    assert found[("emgapi_queue_depth", (("kind", "workflow_run"),))] == 0
    assert 600 <= found[("emgapi_queue_oldest_age_seconds", (("kind", "calculation"),))] < 660
    assert found[("emgapi_workers_alive", ())] == 1  # w2 is silent, w3 ended
    assert found[("emgapi_worker_heartbeat_age_seconds", (("worker", "w2"),))] >= 3600
    assert ("emgapi_worker_heartbeat_age_seconds", (("worker", "w3"),)) not in found
    assert found[("emgapi_storage_bytes", ())] == len(b"CCO\n") + len(b"CCCO\n")
    assert File.objects.count() == 3
    assert found[("emgapi_uploads_open", ())] == 0
    assert found[("emgapi_database_up", ())] == 1


def test_a_run_whose_flow_run_no_worker_starts_is_seen_waiting() -> None:
    waiting = make_calculation(S.QUEUED)
    backing_off = make_calculation(S.QUEUED)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Calculation.objects.filter(id=waiting.id).update(updated_at=an_hour_ago, flow_run_id=uuid4())
    Calculation.objects.filter(id=backing_off.id).update(
        updated_at=an_hour_ago - timedelta(hours=1), flow_run_id=uuid4(), not_before=timezone.now() + timedelta(hours=1)
    )
    assert 3600 <= gauges()[("emgapi_flow_run_wait_oldest_seconds", (("kind", "calculation"),))] < 3700


def test_free_disk_space_is_exported_by_every_process() -> None:
    text = exposition(with_database=False).decode()
    assert 'emgapi_disk_free_bytes{path="data"}' in text and 'emgapi_disk_size_bytes{path="work"}' in text
    assert "emgapi_runs{" not in text and "emgapi_queue_depth" not in text  # the API's alone
