"""Every allowed and every rejected state transition, through the actions layer."""

import itertools

import pytest
from django.db import transaction

from calculations.actions import do_request_cancel
from calculations.actions.transitions import transition
from calculations.errors import InvalidTransition
from calculations.models import CalculationEvent
from calculations.states import CALCULATION_TRANSITIONS, TERMINAL_STATES, RunState
from calculations.tests.factories import make_calculation

S = RunState
PAIRS = list(itertools.product(RunState, RunState))


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition_is_applied_only_when_the_table_allows_it(source: S, target: S) -> None:
    calc = make_calculation(source)
    if target in CALCULATION_TRANSITIONS.get(source, frozenset()):
        with transaction.atomic():
            transition(calc.id, calc.attempt, target, actor="test", reason="because")
        calc.refresh_from_db()
        assert calc.state == target
        event = CalculationEvent.objects.get(calculation=calc)
        assert (event.from_state, event.to_state, event.actor, event.reason) == (source, target, "test", "because")
    else:
        with pytest.raises(InvalidTransition), transaction.atomic():
            transition(calc.id, calc.attempt, target, actor="test")
        calc.refresh_from_db()
        assert calc.state == source
        assert not CalculationEvent.objects.filter(calculation=calc).exists()


@pytest.mark.django_db
def test_a_stale_attempt_cannot_change_state() -> None:
    calc = make_calculation(S.RUNNING)
    calc.attempt = 2
    calc.save()
    with pytest.raises(InvalidTransition, match="attempt 1 cannot move"), transaction.atomic():
        transition(calc.id, 1, S.COMPLETE, actor="old-worker")
    calc.refresh_from_db()
    assert calc.state == S.RUNNING


def test_terminal_states_are_exactly_the_tes_final_states() -> None:
    assert TERMINAL_STATES == {S.COMPLETE, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELED}


@pytest.mark.django_db
def test_cancel_of_a_queued_calculation_ends_it_at_once() -> None:
    calc = do_request_cancel(make_calculation(S.QUEUED).id, actor="test")
    assert calc.state == S.CANCELED
    assert [e.to_state for e in calc.events.all()] == [S.CANCELING, S.CANCELED]


@pytest.mark.django_db
def test_cancel_of_a_running_calculation_waits_for_the_worker() -> None:
    assert do_request_cancel(make_calculation(S.RUNNING).id, actor="test").state == S.CANCELING


@pytest.mark.django_db
@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_cancel_of_a_finished_calculation_is_refused(state: S) -> None:
    with pytest.raises(InvalidTransition, match="already"):
        do_request_cancel(make_calculation(state).id, actor="test")
