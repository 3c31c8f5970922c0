"""A launched run wakes the workers at once, and a retry's when its backoff ends, instead of their
asking Prefect 4 times a second (issue 22): by NOTIFY on PostgreSQL, by a socket on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest
from django.utils import timezone

from workflows.db import db
from workflows.orchestration.wakeups import WorkListener, notify_work

pytestmark = pytest.mark.django_db(transaction=True)  # a notification is delivered at commit


def test_a_launched_run_wakes_a_listening_worker_at_once_and_a_retry_when_it_is_due() -> None:
    woken: list[float] = []

    async def body() -> None:
        arrived = asyncio.Event()

        def wake(delay: float) -> None:
            woken.append(delay)
            arrived.set()

        listener = WorkListener(wake)
        serving = asyncio.create_task(listener.serve())
        await asyncio.wait_for(arrived.wait(), 10)  # listening: it wakes once for what it may have missed
        assert listener.listening
        for due in (None, timezone.now() + timedelta(seconds=30)):
            arrived.clear()
            await db(notify_work)(due)
            await asyncio.wait_for(arrived.wait(), 5)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving  # its connection closed

    asyncio.run(body())
    assert woken[:2] == [0, 0] and 28 < woken[2] <= 30
