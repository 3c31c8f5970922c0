"""The sweeper: what the platform leaves behind, removed once it is no longer wanted. It runs inside
every calculation worker, every `sweeper.interval_seconds` (no flow run of its own), and each pass
is safe to run on several workers at once.

- Work directories of attempts that ended: after `work_retention_hours`, or, for a calculation that
  failed, after `failed_work_retention_days` (kept to debug it). A COMPLETE attempt's directory is
  removed by the worker as soon as its outputs are stored. A GA4GH TES task's directories are never
  kept longer: its scratch is the user's to fill (up to `disk_gb`), and the worker removes it as the
  attempt ends; what a lost worker left goes after `work_retention_hours`, failed or not.
- Upload spools (Django's, S3's) and the filesystem storage's partial blobs (`.incoming`) older than
  `spool_max_age_hours`: left by an upload or a worker killed mid-way.
- Blobs no file row has held for `orphan_blob_grace_hours` (`do_collect_orphan_blobs`).
- Presigned uploads left unfinished past their expiry (`EMGAPI_UPLOADS__EXPIRY_HOURS`): aborted in
  S3, their parts discarded (`do_expire_uploads`).
- Expired idempotency records.
- Notifications delivered or given up, after `notify.keep_days` (`do_expire_notifications`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn
from uuid import UUID

from django.utils import timezone

from calculations.actions import do_collect_orphan_blobs, do_expire_notifications, do_expire_uploads
from calculations.idempotency import expire_records
from calculations.models import Calculation
from calculations.programs import get_program
from calculations.states import ACTIVE_STATES, RunState
from calculations.tools import UnknownTool
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.worker.periodic import every

logger = logging.getLogger(__name__)
S = RunState
FAILED = (S.EXECUTOR_ERROR, S.SYSTEM_ERROR)
BATCH = 500


@dataclass
class SweepCounts:
    work_directories: int = 0
    spool_files: int = 0
    orphan_blobs: int = 0
    idempotency_records: int = 0
    expired_uploads: int = 0
    notifications: int = 0

    def any(self) -> bool:
        return bool(
            self.work_directories
            or self.spool_files
            or self.orphan_blobs
            or self.idempotency_records
            or self.expired_uploads
            or self.notifications
        )


def _attempt_number(path: Path) -> int | None:
    prefix, _, number = path.name.partition("-")
    return int(number) if prefix == "attempt" and number.isdigit() else None


def _age(path: Path, now: float) -> timedelta:
    try:
        return timedelta(seconds=now - path.stat().st_mtime)
    except OSError:
        return timedelta(0)


def _rows(ids: list[UUID]) -> dict[UUID, tuple[str, int, datetime | None, str]]:
    found = Calculation.objects.filter(id__in=ids).values_list("id", "state", "attempt", "finished_at", "tool")
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in found}


def _keeps_failed_workdir(tool: str) -> bool:
    try:
        return get_program(tool).keeps_failed_workdir
    except UnknownTool:  # a tool no longer registered: kept, as a failed tool's is
        return True


def work_directories_due() -> list[Path]:
    """Attempt directories (and directories of calculations that no longer exist) past retention.
    Reads the database: call from the worker's database thread."""
    settings = get_settings()
    root, retention = settings.calculations_dir, timedelta(hours=settings.sweeper.work_retention_hours)
    failed_retention = timedelta(days=settings.sweeper.failed_work_retention_days)
    if not root.is_dir():
        return []
    now_wall, now = time.time(), timezone.now()
    due: list[Path] = []
    directories = [path for path in root.iterdir() if path.is_dir()]
    for start in range(0, len(directories), BATCH):
        chunk = directories[start : start + BATCH]
        ids = {}
        for path in chunk:
            try:
                ids[path] = UUID(path.name)
            except ValueError:
                continue  # not ours
        rows = _rows(list(ids.values()))
        for path, calculation_id in ids.items():
            row = rows.get(calculation_id)
            if row is None:  # its calculation is gone (its user deleted): only the age counts
                if _age(path, now_wall) > retention:
                    due.append(path)
                continue
            state, current, finished_at, tool = row
            attempt_dirs = list(path.iterdir())
            if not attempt_dirs and _age(path, now_wall) > retention:
                due.append(path)  # empty: its last attempt's directory went (left so before it went too)
            for attempt_dir in attempt_dirs:
                number = _attempt_number(attempt_dir)
                if number is None:
                    continue
                if number < current:  # superseded by a retry
                    if _age(attempt_dir, now_wall) > retention:
                        due.append(attempt_dir)
                elif state not in ACTIVE_STATES and finished_at is not None:
                    keep = failed_retention if state in FAILED and _keeps_failed_workdir(tool) else retention
                    if now - finished_at > keep:
                        due.append(attempt_dir)
    return due


def remove_directories(paths: list[Path]) -> int:
    """File I/O only: call in a thread."""
    removed = 0
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        removed += not path.exists()
        parent = path.parent
        if parent != get_settings().calculations_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # the calculation's directory, once its last attempt went
    return removed


def remove_stale_spools() -> int:
    """Partial uploads and spools older than `spool_max_age_hours` (file I/O only: call in a thread)."""
    settings = get_settings()
    max_age, now = timedelta(hours=settings.sweeper.spool_max_age_hours), time.time()
    removed = 0
    for directory in (settings.spool_dir, settings.blob_root / ".incoming"):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.is_file() and _age(path, now) > max_age:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def collect_orphans_and_records() -> tuple[int, int]:
    """Orphan blobs past their grace period and expired idempotency records (database thread)."""
    grace = timedelta(hours=get_settings().sweeper.orphan_blob_grace_hours)
    return do_collect_orphan_blobs(grace), expire_records()


async def sweep_once() -> SweepCounts:
    """One pass: database work in the worker's database thread, file work in a thread of its own."""
    counts = SweepCounts()
    due = await db(work_directories_due)()
    counts.work_directories = await asyncio.to_thread(remove_directories, due)
    counts.spool_files = await asyncio.to_thread(remove_stale_spools)
    counts.orphan_blobs, counts.idempotency_records = await db(collect_orphans_and_records)()
    counts.expired_uploads = await db(do_expire_uploads)()
    counts.notifications = await db(do_expire_notifications)()
    return counts


async def serve() -> NoReturn:
    """A pass every `sweeper.interval_seconds`."""

    async def one_pass() -> None:
        counts = await sweep_once()
        if counts.any():
            logger.info("swept: %s", counts)

    await every(get_settings().sweeper.interval_seconds, one_pass, failed="sweep failed", logger=logger)
