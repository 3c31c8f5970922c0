"""One watcher per worker process that learns which running calculations are being canceled.

A single query per interval covers every calculation this process runs, instead of one query
per calculation: with thousands in flight that is the difference between 1 and 1,000 queries/s.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from asgiref.sync import sync_to_async

from calculations.models import Calculation
from calculations.states import CalculationState
from emgapiv2.config import get_settings

logger = logging.getLogger(__name__)


class CancelWatcher:
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._tracked: set[UUID] = set()
        self._canceling: set[UUID] = set()
        self._task: asyncio.Task[None] | None = None

    def track(self, calculation_id: UUID) -> None:
        self._tracked.add(calculation_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    def untrack(self, calculation_id: UUID) -> None:
        self._tracked.discard(calculation_id)
        self._canceling.discard(calculation_id)

    def is_canceling(self, calculation_id: UUID) -> bool:
        return calculation_id in self._canceling

    async def _poll_forever(self) -> None:
        while self._tracked:
            try:
                self._canceling = await sync_to_async(self._query, thread_sensitive=True)(set(self._tracked))
            except Exception:
                logger.exception("could not read cancel requests; retrying")
            await asyncio.sleep(self.interval_seconds)

    @staticmethod
    def _query(ids: set[UUID]) -> set[UUID]:
        return set(
            Calculation.objects.filter(id__in=ids, state=CalculationState.CANCELING).values_list("id", flat=True)
        )


_watcher: CancelWatcher | None = None


def get_cancel_watcher() -> CancelWatcher:
    global _watcher
    if _watcher is None:
        _watcher = CancelWatcher(get_settings().worker.cancel_check_seconds)
    return _watcher
