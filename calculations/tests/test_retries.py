"""SYSTEM_ERROR is retried as a new attempt with backoff; EXECUTOR_ERROR never; a stale attempt is fenced off."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from calculations.actions import JobOutcome, OutputBlob, do_end_attempt
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
