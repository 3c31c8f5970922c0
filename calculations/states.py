"""Calculation states (GA4GH TES names) and the one table of allowed transitions."""

from django.db import models


class CalculationState(models.TextChoices):
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


S = CalculationState

ALLOWED_TRANSITIONS: dict[CalculationState, frozenset[CalculationState]] = {
    # QUEUED -> COMPLETE/EXECUTOR_ERROR: a calculation that followed an identical in-flight one
    # takes over its outcome; QUEUED -> SYSTEM_ERROR: it could never be started.
    # QUEUED -> QUEUED: its flow run died before starting it; the next attempt is queued.
    S.QUEUED: frozenset({S.INITIALIZING, S.CANCELING, S.COMPLETE, S.SYSTEM_ERROR, S.QUEUED}),
    # INITIALIZING/RUNNING -> QUEUED: the platform failed the attempt and a new one is queued (a
    # retry, with attempt + 1); SYSTEM_ERROR is entered only once the attempts are used up.
    S.INITIALIZING: frozenset({S.RUNNING, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED}),
    S.RUNNING: frozenset({S.COMPLETE, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED}),
    S.CANCELING: frozenset({S.CANCELED}),
    S.COMPLETE: frozenset(),
    S.EXECUTOR_ERROR: frozenset(),
    S.SYSTEM_ERROR: frozenset(),
    S.CANCELED: frozenset(),
}

TERMINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)
ACTIVE_STATES = frozenset(CalculationState) - TERMINAL_STATES


def sources_of(target: CalculationState) -> frozenset[CalculationState]:
    """States from which `target` may be entered."""
    return frozenset(source for source, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def is_allowed(source: CalculationState, target: CalculationState) -> bool:
    return target in ALLOWED_TRANSITIONS[source]
