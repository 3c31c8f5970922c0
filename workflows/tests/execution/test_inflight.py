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
    assert InFlightWatcher._query(tracked, heartbeat=True) == {(canceling.id, 1), (superseded.id, 1)}
    superseded.refresh_from_db()
    assert superseded.heartbeat_at is None  # and its stale heartbeat did not refresh attempt 2


def test_a_look_taken_during_one_attempt_does_not_stop_the_next() -> None:
    """Attempt 1 ended and attempt 2 started (at once: retried with more memory) while a look, taken
    with attempt 1 tracked, was on its way: that look says attempt 1 is superseded, not attempt 2."""
    calc = make_calculation(S.RUNNING)
    Calculation.objects.filter(id=calc.id).update(attempt=2)
    watcher = InFlightWatcher(interval_seconds=3600, heartbeat_seconds=3600)
    watcher._tracked[calc.id] = 1
    looked = InFlightWatcher._query(dict(watcher._tracked), False)
    watcher.untrack(calc.id)
    watcher._tracked[calc.id] = 2  # attempt 2 starts before the look comes back
    watcher._canceling = looked
    assert not watcher.is_canceling(calc.id)
    watcher._tracked[calc.id] = 1
    assert watcher.is_canceling(calc.id)  # (what the look said of attempt 1)
