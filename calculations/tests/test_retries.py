"""SYSTEM_ERROR is retried as a new attempt with backoff; EXECUTOR_ERROR never; a stale attempt is fenced off."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from calculations.actions import JobOutcome, OutputBlob, do_complete_calculation, do_fail_calculation
from calculations.errors import InvalidTransition
from calculations.models import CalculationEvent, File
from calculations.provenance import update_attempt
from calculations.states import CalculationState
from calculations.tests.factories import make_calculation
from emgapiv2.config import RetrySettings, get_settings

S = CalculationState
pytestmark = pytest.mark.django_db


def _running(attempt: int = 1):  # type: ignore[no-untyped-def]
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
        retried = do_fail_calculation(calc.id, 1, state=S.SYSTEM_ERROR, error="heartbeat lost")
    assert (retried.state, retried.attempt, retried.flow_run_id, retried.error) == (
        S.QUEUED, 2, None, "heartbeat lost",
    )  # fmt: skip
    delay = get_settings().retry.delay_before(2)
    assert retried.not_before is not None and (retried.not_before - before).total_seconds() >= delay - 0.01
    event = CalculationEvent.objects.filter(calculation=calc).latest("id")
    assert (event.from_state, event.to_state, event.attempt) == (S.RUNNING, S.QUEUED, 2)
    assert "system error on attempt 1: heartbeat lost; retrying as attempt 2" in event.reason
    assert retried.provenance["attempts"][0]["finished_at"]  # the failed attempt keeps its record


def test_the_last_attempt_ends_in_system_error() -> None:
    last = get_settings().retry.max_attempts
    calc = _running(attempt=last)
    with transaction.atomic():
        failed = do_fail_calculation(calc.id, last, state=S.SYSTEM_ERROR, error="worker died")
    assert (failed.state, failed.attempt, failed.error) == (S.SYSTEM_ERROR, last, "worker died")


def test_a_tool_failure_is_never_retried() -> None:
    calc = _running()
    with transaction.atomic():
        failed = do_fail_calculation(calc.id, 1, state=S.EXECUTOR_ERROR, error="exited with code 1")
    assert (failed.state, failed.attempt) == (S.EXECUTOR_ERROR, 1)


def test_a_worker_on_an_older_attempt_can_change_neither_state_nor_outputs() -> None:
    calc = _running()
    with transaction.atomic():
        do_fail_calculation(calc.id, 1, state=S.SYSTEM_ERROR, error="heartbeat lost")
    outcome = JobOutcome(0, {}, None, None)
    late = [OutputBlob(role="proteins", name="p.faa", sha256="a" * 64, size=1)]
    # the first worker was only slow, not dead: its late completion must not land
    with pytest.raises(InvalidTransition), transaction.atomic():
        do_complete_calculation(calc.id, 1, outputs=late, outcome=outcome)
    with pytest.raises(InvalidTransition), transaction.atomic():
        do_fail_calculation(calc.id, 1, state=S.EXECUTOR_ERROR, error="late")
    calc.refresh_from_db()
    assert (calc.state, calc.attempt) == (S.QUEUED, 2)
    assert not File.objects.filter(produced_by=calc).exists()


@pytest.mark.parametrize(("attempt", "seconds"), [(2, 10), (3, 20), (4, 40), (9, 600)])
def test_backoff_grows_to_a_cap(attempt: int, seconds: float) -> None:
    retry = RetrySettings(backoff_seconds=10, backoff_factor=2, max_backoff_seconds=600)
    assert retry.delay_before(attempt) == seconds
