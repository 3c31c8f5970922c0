"""The one table from how an attempt ended to what the calculation does next."""

from __future__ import annotations

import pytest

from calculations.policies import POLICIES, AttemptEnd, decide, retry_delay_seconds
from calculations.states import ACTIVE_STATES, RunState
from emgapiv2.config import RetrySettings, get_settings

S = RunState
TOOL_FAULTS = [
    AttemptEnd.TOOL_FAILED,
    AttemptEnd.OUT_OF_MEMORY,
    AttemptEnd.TIME_LIMIT,
    AttemptEnd.SCRATCH_EXCEEDED,
    AttemptEnd.TOOL_NOT_STARTED,
    AttemptEnd.OUTPUTS_INVALID,
    AttemptEnd.OUTPUTS_TOO_LARGE,
]
PLATFORM_FAULTS = [
    AttemptEnd.JOB_LOST,
    AttemptEnd.BACKEND_UNAVAILABLE,
    AttemptEnd.STORAGE_FAILED,
    AttemptEnd.WORKER_LOST,
    AttemptEnd.PLATFORM_ERROR,
]


def test_every_way_an_attempt_can_end_has_a_policy() -> None:
    assert set(POLICIES) == set(AttemptEnd)


@pytest.mark.parametrize("end", TOOL_FAULTS)
def test_a_tool_fault_is_an_executor_error_and_never_retried(end: AttemptEnd) -> None:
    assert decide(end, current_state=S.RUNNING, attempt=1).state == S.EXECUTOR_ERROR


@pytest.mark.parametrize("end", PLATFORM_FAULTS)
def test_a_platform_fault_queues_the_next_attempt_until_the_last(end: AttemptEnd) -> None:
    last = get_settings().retry.max_attempts
    retried = decide(end, current_state=S.RUNNING, attempt=1)
    assert retried.state == S.QUEUED and retried.retry_in_seconds == retry_delay_seconds(2)
    assert decide(end, current_state=S.RUNNING, attempt=last).state == S.SYSTEM_ERROR


def test_an_operators_scancel_is_final() -> None:
    assert decide(AttemptEnd.STOPPED_OUTSIDE, current_state=S.RUNNING, attempt=1).state == S.SYSTEM_ERROR


def test_a_location_the_deployment_cannot_reach_is_final() -> None:
    """A TES task naming an s3:// object without S3 storage: another attempt could reach it no better."""
    decision = decide(AttemptEnd.LOCATION_UNREACHABLE, current_state=S.INITIALIZING, attempt=1)
    assert decision.state == S.SYSTEM_ERROR and decision.retry_in_seconds is None


@pytest.mark.parametrize("end", list(AttemptEnd))
def test_a_requested_cancel_wins_over_any_end(end: AttemptEnd) -> None:
    decision = decide(end, current_state=S.CANCELING, attempt=1)
    assert decision.state == S.CANCELED and decision.retry_in_seconds is None
    assert decision.outputs_discarded == (end is AttemptEnd.SUCCEEDED)


def test_success_completes() -> None:
    assert decide(AttemptEnd.SUCCEEDED, current_state=S.RUNNING, attempt=1).state == S.COMPLETE


def test_every_decision_leaves_the_calculation_finished_or_queued() -> None:
    for end in AttemptEnd:
        state = decide(end, current_state=S.RUNNING, attempt=1).state
        assert state == S.QUEUED or state not in ACTIVE_STATES, end


@pytest.mark.parametrize(("attempt", "seconds"), [(2, 10), (3, 20), (4, 40), (9, 600)])
def test_backoff_grows_to_a_cap(attempt: int, seconds: float) -> None:
    retry = RetrySettings(backoff_seconds=10, backoff_factor=2, max_backoff_seconds=600)
    assert retry_delay_seconds(attempt, retry) == seconds
