"""The worker's watcher stops a tool when it must: a cancel, or its attempt superseded."""

from __future__ import annotations

import pytest

from calculations.models import Calculation
from calculations.states import RunState
from calculations.tests.factories import make_calculation
from workflows.execution.inflight import InFlightWatcher

S = RunState
pytestmark = pytest.mark.django_db


def test_a_tool_stops_when_canceled_or_when_its_attempt_was_superseded() -> None:
    running, canceling, superseded = (make_calculation(state) for state in (S.RUNNING, S.CANCELING, S.RUNNING))
    # this worker was paused, taken for dead, and its attempt 1 retried as attempt 2 elsewhere
    Calculation.objects.filter(id=superseded.id).update(attempt=2)
    tracked = {running.id: 1, canceling.id: 1, superseded.id: 1}
    assert InFlightWatcher._query(tracked, heartbeat=True) == {canceling.id, superseded.id}
    superseded.refresh_from_db()
    assert superseded.heartbeat_at is None  # and its stale heartbeat did not refresh attempt 2
