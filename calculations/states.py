"""The states of every kind of run (GA4GH TES names, plus PAUSED for a workflow run waiting for an
operator), and each kind's one table of allowed transitions (`calculations/run_kinds.py` pairs them)."""

from django.db import models


class RunState(models.TextChoices):
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    PAUSED = "PAUSED"  # a workflow run waiting for an operator's input (design brief §10); never a calculation


S = RunState
TERMINAL_STATES = frozenset({S.COMPLETE, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELED})
ACTIVE_STATES = frozenset(RunState) - TERMINAL_STATES
# a worker holds the attempt: it heartbeats, and the reconciler watches that heartbeat
ATTEMPT_IN_PROGRESS_STATES = frozenset({S.INITIALIZING, S.RUNNING, S.CANCELING})
# every kind: a cancel ends in CANCELED, and a final state is final (a state a table leaves out has no way out)
_ENDING: dict[RunState, frozenset[RunState]] = {S.CANCELING: frozenset({S.CANCELED})}

CALCULATION_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    # QUEUED -> COMPLETE: a calculation that followed an identical in-flight one takes over its
    # success (a leader that fails releases it to run on its own: a follower never fails with it).
    # QUEUED -> QUEUED: its flow run was lost before starting it; the next attempt is queued.
    # QUEUED -> SYSTEM_ERROR: the same on its last attempt: it could never be started.
    S.QUEUED: frozenset({S.INITIALIZING, S.CANCELING, S.COMPLETE, S.SYSTEM_ERROR, S.QUEUED}),
    # INITIALIZING/RUNNING -> QUEUED: the platform failed the attempt and a new one is queued (a
    # retry, with attempt + 1); SYSTEM_ERROR is entered only once the attempts are used up.
    S.INITIALIZING: frozenset({S.RUNNING, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED}),
    S.RUNNING: frozenset({S.COMPLETE, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED}),
    **_ENDING,
}

# A workflow run (design brief §10) has no INITIALIZING of its own: its steps initialize. QUEUED ->
# QUEUED / RUNNING -> QUEUED: its flow run or worker was lost, and it is resumed as attempt + 1.
# RUNNING <-> PAUSED: it waits for an operator's input (the dashboard's form, or the API's resume);
# a pause that times out fails it, and a lost worker resumes it as the next attempt.
WORKFLOW_RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELING, S.SYSTEM_ERROR, S.QUEUED}),
    S.RUNNING: frozenset({S.COMPLETE, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED, S.PAUSED}),
    S.PAUSED: frozenset({S.RUNNING, S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELING, S.QUEUED}),
    **_ENDING,
}
