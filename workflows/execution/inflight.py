"""One watcher per worker process over every calculation it runs: it learns which are being
canceled, and it heartbeats for all of them.

One query per interval covers every calculation the process runs, instead of one per
calculation: with thousands in flight that is the difference between 1 and 1,000 queries/s. The
heartbeat is what tells the reconciler that the worker is alive: when it stops (the worker was
killed, its host died), the calculations go to a retry once it is `stale_after_seconds` old. It is
fenced by attempt, like every write: a worker still running attempt N never refreshes N + 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

from calculations.actions import do_record_heartbeats
from calculations.models import Calculation
from calculations.states import RunState
from emgapiv2.config import get_settings
from workflows.db import db

logger = logging.getLogger(__name__)
S = RunState


class InFlightWatcher:
    def __init__(self, interval_seconds: float, heartbeat_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._tracked: dict[UUID, int] = {}  # calculation id -> the attempt this process runs
        # (calculation, attempt) pairs: a look taken while attempt N ran must not stop attempt N + 1,
        # which may have started (at once, retried with more memory) before the look came back
        self._canceling: set[tuple[UUID, int]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat = 0.0

    def track(self, calculation_id: UUID, attempt: int) -> None:
        self._tracked[calculation_id] = attempt
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    def untrack(self, calculation_id: UUID) -> None:
        self._tracked.pop(calculation_id, None)

    def is_canceling(self, calculation_id: UUID) -> bool:
        """Its tool must stop: a cancel was requested, or this attempt is no longer the calculation's
        (the worker was taken for dead while it was only paused, and a new attempt was queued)."""
        return (calculation_id, self._tracked.get(calculation_id)) in self._canceling

    async def _poll_forever(self) -> None:
        while self._tracked:
            heartbeat = time.monotonic() - self._last_heartbeat >= self.heartbeat_seconds
            try:
                self._canceling = await db(self._query)(dict(self._tracked), heartbeat)
                if heartbeat:
                    self._last_heartbeat = time.monotonic()
            except Exception:
                logger.exception("could not read cancel requests or heartbeat; retrying")
            await asyncio.sleep(self.interval_seconds)

    @staticmethod
    def _query(attempts: dict[UUID, int], heartbeat: bool) -> set[tuple[UUID, int]]:
        if heartbeat:
            do_record_heartbeats(attempts)
        current = {
            calculation_id: (attempt, state)
            for calculation_id, attempt, state in Calculation.objects.filter(id__in=attempts).values_list(
                "id", "attempt", "state"
            )
        }
        must_stop = set()
        for calculation_id, attempt in attempts.items():
            row_attempt, state = current.get(calculation_id, (None, None))
            if row_attempt != attempt or state == S.CANCELING:
                must_stop.add((calculation_id, attempt))
        return must_stop


_watcher: InFlightWatcher | None = None


def get_inflight_watcher() -> InFlightWatcher:
    global _watcher
    if _watcher is None:
        settings = get_settings().worker
        _watcher = InFlightWatcher(settings.cancel_check_seconds, settings.heartbeat_seconds)
    return _watcher
