"""SYSTEM_ERROR is retried as a new attempt with backoff; EXECUTOR_ERROR never; a stale attempt is fenced off."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from calculations.actions import JobOutcome, OutputBlob, do_end_attempt, do_mark_running, do_start_calculation
from calculations.errors import InvalidTransition
from calculations.models import Calculation, CalculationEvent, File
from calculations.policies import AttemptEnd, retry_delay_seconds
from calculations.provenance import update_attempt
from calculations.states import RunState
from calculations.tests.factories import make_calculation
from emgapiv2.config import get_settings

S = RunState
pytestmark = pytest.mark.django_db


def _running(attempt: int = 1) -> Calculation:
    calc = make_calculation(S.RUNNING)
    calc.attempt = attempt
    calc.provenance = update_attempt(calc.provenance, attempt, backend="local", host="h")
    calc.flow_run_id = "00000000-0000-0000-0000-000000000001"
    calc.save()
    return calc


def test_a_platform_failure_queues_the_next_attempt_after_a_backoff() -> None:
    calc = _running()
    before = timezone.now()
    with transaction.atomic():
        retried = do_end_attempt(calc.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost")
    assert (retried.state, retried.attempt, retried.flow_run_id, retried.error) == (
        S.QUEUED, 2, None, "heartbeat lost",
    )  # fmt: skip
    delay = retry_delay_seconds(2)
    assert retried.not_before is not None and (retried.not_before - before).total_seconds() >= delay - 0.01
    event = CalculationEvent.objects.filter(calculation=calc).latest("id")
    assert (event.from_state, event.to_state, event.attempt) == (S.RUNNING, S.QUEUED, 2)
    assert "system error on attempt 1: heartbeat lost; retrying as attempt 2" in event.reason
    assert retried.provenance["attempts"][0]["finished_at"]  # the failed attempt keeps its record


def test_the_last_attempt_ends_in_system_error() -> None:
    last = get_settings().retry.max_attempts
    calc = _running(attempt=last)
    with transaction.atomic():
        failed = do_end_attempt(calc.id, last, AttemptEnd.WORKER_LOST, message="worker died")
    assert (failed.state, failed.attempt, failed.error) == (S.SYSTEM_ERROR, last, "worker died")


def test_a_tool_failure_is_never_retried() -> None:
    calc = _running()
    with transaction.atomic():
        failed = do_end_attempt(calc.id, 1, AttemptEnd.TOOL_FAILED, message="exited with code 1")
    assert (failed.state, failed.attempt) == (S.EXECUTOR_ERROR, 1)


def test_a_worker_on_an_older_attempt_can_change_neither_state_nor_outputs() -> None:
    calc = _running()
    with transaction.atomic():
        do_end_attempt(calc.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost")
    outcome = JobOutcome(0, {}, None, None)
    late = [OutputBlob(role="proteins", name="p.faa", sha256="a" * 64, size=1)]
    # the first worker was only slow, not dead: its late completion must not land
    with pytest.raises(InvalidTransition), transaction.atomic():
        do_end_attempt(calc.id, 1, AttemptEnd.SUCCEEDED, outputs=late, outcome=outcome)
    with pytest.raises(InvalidTransition), transaction.atomic():
        do_end_attempt(calc.id, 1, AttemptEnd.TOOL_FAILED, message="late")
    calc.refresh_from_db()
    assert (calc.state, calc.attempt) == (S.QUEUED, 2)
    assert not File.objects.filter(produced_by=calc).exists()


# --- a limit exceeded: retried at once with more of it, up to the run's cap -----------------------


def _given(memory_mb: int, time_limit_seconds: int, cap_memory: int, cap_time: int) -> Calculation:
    calc = _running()
    granted = {"cpus": 1, "memory_mb": memory_mb, "time_limit_seconds": time_limit_seconds, "gpus": 0}
    calc.provenance = {
        **update_attempt(calc.provenance, 1, resources=granted),
        "resources": granted,
        "escalation": {
            "memory_mb": {"factor": 2, "cap": cap_memory},
            "time_limit_seconds": {"factor": 3, "cap": cap_time},
        },
    }
    calc.save()
    return calc


def _next_attempt(calc: Calculation, attempt: int, end: AttemptEnd) -> Calculation:
    """End `attempt` with `end`; if a next one is queued (its `not_before` tells when), start it as the
    worker does (its record then holds what the calculation is now given)."""
    with transaction.atomic():
        queued = do_end_attempt(calc.id, attempt, end, message="killed")
    if queued.state == S.QUEUED:
        do_start_calculation(calc.id, attempt + 1, flow_run_id=None, backend="local", host="h", workdir="w")
        return do_mark_running(calc.id, attempt + 1, job_id="1", argv=["tool"], executable=None)
    return queued


def test_out_of_memory_is_retried_at_once_with_twice_the_memory_until_the_cap() -> None:
    calc = _given(100, 60, cap_memory=300, cap_time=600)
    before = timezone.now()
    second = _next_attempt(calc, 1, AttemptEnd.OUT_OF_MEMORY)
    assert (second.attempt, second.provenance["resources"]["memory_mb"]) == (2, 200)
    assert second.not_before is not None and (second.not_before - before).total_seconds() < 1  # no backoff
    third = _next_attempt(second, 2, AttemptEnd.OUT_OF_MEMORY)
    assert third.provenance["resources"]["memory_mb"] == 300  # not 400: the cap
    last = _next_attempt(third, 3, AttemptEnd.OUT_OF_MEMORY)
    assert (last.state, last.error) == (S.EXECUTOR_ERROR, "out of memory at 300 MB (the cap); attempt 3 of 3")
    assert [r["resources"]["memory_mb"] for r in last.provenance["attempts"]] == [100, 200, 300]
    reasons = list(
        CalculationEvent.objects.filter(calculation=calc, to_state=S.QUEUED).values_list("reason", flat=True)
    )
    assert "out of memory at 100 MB on attempt 1; retrying as attempt 2 with 200 MB" in reasons


def test_a_time_limit_is_retried_with_more_time_and_runs_out_of_attempts_below_the_cap() -> None:
    calc = _given(100, 60, cap_memory=300, cap_time=10_000)
    second = _next_attempt(calc, 1, AttemptEnd.TIME_LIMIT)
    assert (second.provenance["resources"]["time_limit_seconds"], second.provenance["resources"]["memory_mb"]) == (
        180, 100,
    )  # fmt: skip
    third = _next_attempt(second, 2, AttemptEnd.TIME_LIMIT)
    last = _next_attempt(third, 3, AttemptEnd.TIME_LIMIT)
    assert (last.state, last.error) == (S.EXECUTOR_ERROR, "time limit exceeded at 540 s; attempt 3 of 3")


def test_a_cancel_requested_meanwhile_wins_over_a_retry_with_more() -> None:
    calc = _given(100, 60, cap_memory=300, cap_time=600)
    Calculation.objects.filter(id=calc.id).update(state=S.CANCELING)
    with transaction.atomic():
        ended = do_end_attempt(calc.id, 1, AttemptEnd.OUT_OF_MEMORY, message="killed")
    assert (ended.state, ended.attempt) == (S.CANCELED, 1)
