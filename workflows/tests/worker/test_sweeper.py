"""The sweeper removes what is no longer wanted, and nothing that is."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from calculations.actions import do_create_file, do_delete_file
from calculations.models import Calculation, IdempotentRequest
from calculations.states import RunState
from calculations.storage import get_storage
from calculations.tests.factories import make_calculation
from calculations.workdirs import attempt_dir, remove_attempt_dir
from emgapiv2.config import get_settings
from workflows.worker.sweeper import sweep_once

S = RunState
pytestmark = pytest.mark.django_db(transaction=True)
HOURS = 3600


def _attempt(state: RunState, *, attempt: int = 1, finished_hours_ago: float | None = None) -> Path:
    calc = make_calculation(state)
    fields = {"attempt": max(attempt, 1)}
    if finished_hours_ago is not None:
        fields["finished_at"] = timezone.now() - timedelta(hours=finished_hours_ago)  # type: ignore[assignment]
    Calculation.objects.filter(id=calc.id).update(**fields)
    path = attempt_dir(calc.id, attempt)
    (path / "work").mkdir(parents=True)
    (path / "work" / "big.out").write_bytes(b"x" * 1000)
    return path


def _age(path: Path, hours: float) -> None:
    old = time.time() - hours * HOURS
    os.utime(path, (old, old))


def test_work_directories_go_after_their_retention_and_failed_ones_are_kept_longer() -> None:
    leftover = _attempt(S.CANCELED, finished_hours_ago=2)
    failed_recently = _attempt(S.EXECUTOR_ERROR, finished_hours_ago=2)
    failed_long_ago = _attempt(S.SYSTEM_ERROR, finished_hours_ago=24 * 8)
    running = _attempt(S.RUNNING)
    fresh = _attempt(S.CANCELED, finished_hours_ago=0.1)
    retried = _attempt(S.RUNNING, attempt=2)
    superseded = retried.parent / "attempt-1"
    (superseded / "work").mkdir(parents=True)
    _age(superseded, 2)
    no_calculation = get_settings().calculations_dir / "00000000-0000-0000-0000-000000000000" / "attempt-1"
    no_calculation.mkdir(parents=True)
    _age(no_calculation.parent, 2)

    counts = asyncio.run(sweep_once())

    gone = [leftover, failed_long_ago, superseded, no_calculation]
    kept = [failed_recently, running, fresh, retried]  # failed: kept for debugging; the others still wanted
    assert [path for path in gone if path.exists()] == []
    assert [path for path in kept if not path.exists()] == []
    assert counts.work_directories >= 3
    assert not leftover.parent.exists()  # the calculation's own directory went with its last attempt


def test_a_completed_attempt_leaves_no_directory_and_empty_ones_left_before_go() -> None:
    """Left behind, every sweep would walk them all (10,000 after a few maps: the idle worker's CPU)."""
    done = _attempt(S.COMPLETE, finished_hours_ago=0)
    remove_attempt_dir(done)  # what a runner does once its attempt completed
    assert not done.parent.exists()
    left_empty, recent_empty = (_attempt(S.COMPLETE, finished_hours_ago=2).parent for _ in range(2))
    for path in (left_empty, recent_empty):
        for attempt in path.iterdir():
            shutil.rmtree(attempt)
    _age(left_empty, 2)
    asyncio.run(sweep_once())
    assert not left_empty.exists() and recent_empty.exists()


def test_a_failed_tes_tasks_scratch_left_by_a_lost_worker_is_not_kept_for_days() -> None:
    """Its size is the user's to choose (up to disk_gb) and no longer counts against their quota."""
    from calculations.tes import TES_TOOL

    task = _attempt(S.SYSTEM_ERROR, finished_hours_ago=2)
    Calculation.objects.filter(id=task.parent.name).update(tool=TES_TOOL)
    tool = _attempt(S.SYSTEM_ERROR, finished_hours_ago=2)
    asyncio.run(sweep_once())
    assert not task.exists() and tool.exists()


def test_spools_and_partial_blobs_left_by_a_killed_upload_go_after_an_hour() -> None:
    settings = get_settings()
    incoming = settings.blob_root / ".incoming"
    for directory in (settings.spool_dir, incoming):
        directory.mkdir(parents=True, exist_ok=True)
    stale, partial = settings.spool_dir / "upload.part", incoming / "tmp1234"
    recent = settings.spool_dir / "in-progress.part"
    for path in (stale, partial, recent):
        path.write_bytes(b"half an upload")
    _age(stale, 2)
    _age(partial, 2)
    counts = asyncio.run(sweep_once())
    assert not stale.exists() and not partial.exists() and recent.exists()
    assert counts.spool_files >= 2


def test_orphan_blobs_and_expired_idempotency_records_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create(username="sweep")
    file = do_create_file(owner.id, "gone.txt", io.BytesIO(b"nobody holds me soon\n"))
    do_delete_file(owner.id, file.id)
    monkeypatch.setattr(get_settings().sweeper, "orphan_blob_grace_hours", 0)
    old = IdempotentRequest.objects.create(owner=owner, key="k", fingerprint="f")
    IdempotentRequest.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=2))
    counts = asyncio.run(sweep_once())
    assert not get_storage().exists(file.sha256)
    assert not IdempotentRequest.objects.filter(id=old.id).exists()
    assert (counts.orphan_blobs, counts.idempotency_records) == (1, 1)


@pytest.mark.s3
def test_unfinished_uploads_expire_and_s3_discards_their_parts(s3_storage: Any) -> None:
    import httpx
    from django.contrib.auth import get_user_model

    from calculations.actions import check_create_upload
    from calculations.actions.uploads import presigned_parts
    from calculations.models import Upload

    owner = get_user_model().objects.create(username="dora")
    left, fresh = (check_create_upload(owner.id, name, 10, None) for name in ("left", "fresh"))
    (part,) = presigned_parts(left)
    assert httpx.put(part.url, content=b"0123456789").status_code == 200
    Upload.objects.filter(id=left.id).update(expires_at=timezone.now() - timedelta(minutes=1))

    counts = asyncio.run(sweep_once())
    assert counts.expired_uploads == 1
    assert Upload.objects.get(id=left.id).state == "EXPIRED" and Upload.objects.get(id=fresh.id).state == "OPEN"
    in_s3 = s3_storage.client.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", [])
    assert [u["Key"] for u in in_s3] == [fresh.key]
    assert httpx.put(part.url, content=b"0123456789").status_code == 404  # its parts are gone for good
    assert asyncio.run(sweep_once()).expired_uploads == 0


def test_ended_notifications_go_after_their_retention_and_pending_ones_stay() -> None:
    from calculations.models import Notification, NotificationStatus

    calc = make_calculation(S.COMPLETE)
    long_ago = timezone.now() - timedelta(days=get_settings().notify.keep_days + 1)

    def notification(status: str, created_at: Any) -> Notification:
        return Notification.objects.create(
            owner_id=calc.owner_id, kind="calculation", run_id=calc.id, sequence=1, state="COMPLETE",
            url="https://example.org/hook", created_at=created_at, next_attempt_at=created_at, status=status,
        )  # fmt: skip

    old_delivered = notification(NotificationStatus.DELIVERED, long_ago)
    old_failed = notification(NotificationStatus.FAILED, long_ago)
    old_pending = notification(NotificationStatus.PENDING, long_ago)
    recent = notification(NotificationStatus.DELIVERED, timezone.now())
    assert asyncio.run(sweep_once()).notifications == 2
    left = set(Notification.objects.values_list("id", flat=True))
    assert left == {old_pending.id, recent.id} and not {old_delivered.id, old_failed.id} & left
