"""What happens to a calculation when an attempt ends: the one table (design brief §2).

Whoever learns how an attempt ended (the worker's execution path, the reconciler, an action)
names what happened as an `AttemptEnd`; `decide` answers the calculation's next state and whether
a new attempt is queued. The actions apply the answer under the row's lock, so a cancel that
arrives while an attempt ends is seen here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from calculations.states import RunState
from emgapiv2.config import RetrySettings, get_settings

S = RunState


class AttemptEnd(enum.StrEnum):
    SUCCEEDED = "the tool succeeded and its outputs were stored"
    TOOL_FAILED = "the tool exited non-zero or was killed by a signal"
    OUT_OF_MEMORY = "the tool was killed for exceeding its memory limit"
    TIME_LIMIT = "the tool was killed for exceeding its time limit"
    SCRATCH_EXCEEDED = "the task was stopped for writing more than its scratch space"
    TOOL_NOT_STARTED = "the tool's program could not be started"
    OUTPUTS_INVALID = "a required output is missing or empty"
    OUTPUTS_TOO_LARGE = "the outputs exceed the tool's output limit or the owner's storage quota"
    CANCELED = "the tool was stopped because a cancel was requested"
    STOPPED_OUTSIDE = "the job was stopped outside the platform (an operator's scancel)"
    JOB_LOST = "the backend no longer knows the job"
    BACKEND_UNAVAILABLE = "the backend could not take the job (engine or scheduler unreachable, image missing)"
    STORAGE_FAILED = "inputs, outputs or logs could not be read or stored"
    LOCATION_UNREACHABLE = "an input or output URL names a location this deployment cannot read or write"
    WORKER_LOST = "the worker stopped heartbeating, or its flow run ended, vanished or never started"
    PLATFORM_ERROR = "an unexpected error in the platform's own code"
    # (a workflow run's attempt: its flow run)
    FLOW_FAILED = "the workflow's flow raised: a step failed, or its own code did"
    STEP_SYSTEM_ERROR = "a step of the workflow failed in the platform, after that step's own retries"
    LAUNCH_REFUSED = "Prefect refused to create the flow run (its parameters, or a deployment no longer there)"


@dataclass(frozen=True)
class Policy:
    state: RunState  # where the calculation ends when no new attempt is queued
    retried: bool  # a platform fault: queue a new attempt while attempts are left
    # a limit the run was given: queue a new attempt at once with more of it, while it may have more
    # (calculations/resources.py: the run's plan and its cap) and attempts are left
    escalates: str | None = None


POLICIES: Mapping[AttemptEnd, Policy] = {
    AttemptEnd.SUCCEEDED: Policy(S.COMPLETE, retried=False),
    # the tool's own failures are never retried: the same inputs would fail the same way
    AttemptEnd.TOOL_FAILED: Policy(S.EXECUTOR_ERROR, retried=False),
    # the same inputs need the same memory and time: only more of it can change the outcome
    AttemptEnd.OUT_OF_MEMORY: Policy(S.EXECUTOR_ERROR, retried=False, escalates="memory_mb"),
    AttemptEnd.TIME_LIMIT: Policy(S.EXECUTOR_ERROR, retried=False, escalates="time_limit_seconds"),
    AttemptEnd.SCRATCH_EXCEEDED: Policy(S.EXECUTOR_ERROR, retried=False),
    AttemptEnd.TOOL_NOT_STARTED: Policy(S.EXECUTOR_ERROR, retried=False),
    AttemptEnd.OUTPUTS_INVALID: Policy(S.EXECUTOR_ERROR, retried=False),
    AttemptEnd.OUTPUTS_TOO_LARGE: Policy(S.EXECUTOR_ERROR, retried=False),
    AttemptEnd.CANCELED: Policy(S.CANCELED, retried=False),
    # an operator stopped it on purpose: starting it again would undo their decision
    AttemptEnd.STOPPED_OUTSIDE: Policy(S.SYSTEM_ERROR, retried=False),
    AttemptEnd.JOB_LOST: Policy(S.SYSTEM_ERROR, retried=True),
    AttemptEnd.BACKEND_UNAVAILABLE: Policy(S.SYSTEM_ERROR, retried=True),
    AttemptEnd.STORAGE_FAILED: Policy(S.SYSTEM_ERROR, retried=True),
    # a platform limit, not a fault: the next attempt could reach the location no better
    AttemptEnd.LOCATION_UNREACHABLE: Policy(S.SYSTEM_ERROR, retried=False),
    AttemptEnd.WORKER_LOST: Policy(S.SYSTEM_ERROR, retried=True),
    AttemptEnd.PLATFORM_ERROR: Policy(S.SYSTEM_ERROR, retried=True),
    AttemptEnd.FLOW_FAILED: Policy(S.EXECUTOR_ERROR, retried=False),
    AttemptEnd.STEP_SYSTEM_ERROR: Policy(S.SYSTEM_ERROR, retried=False),
    # the same request would be refused again: a retry would only hold the owner's quota
    AttemptEnd.LAUNCH_REFUSED: Policy(S.SYSTEM_ERROR, retried=False),
}


@dataclass(frozen=True)
class Decision:
    state: RunState  # QUEUED means: attempt + 1 is queued
    retry_in_seconds: float | None = None
    outputs_discarded: bool = False  # the tool succeeded, but a cancel came first
    escalated: bool = False  # the attempt queued is given more of the limit the last one exceeded


def retry_delay_seconds(next_attempt: int, retry: RetrySettings | None = None) -> float:
    """Backoff before `next_attempt` (2, 3, …): it grows by a factor per attempt, up to a cap."""
    retry = retry or get_settings().retry
    return min(retry.backoff_seconds * retry.backoff_factor ** max(next_attempt - 2, 0), retry.max_backoff_seconds)


def decide(
    end: AttemptEnd,
    *,
    current_state: RunState,
    attempt: int,
    max_attempts: int | None = None,
    can_escalate: bool = False,
) -> Decision:
    """The calculation's next state when its attempt `attempt`, now `current_state`, ended with `end`.
    (A workflow run, resumed rather than rerun, passes its own `max_attempts`.) `can_escalate`: the run
    may still be given more of the limit `end` names (`calculations.resources.next_grant`)."""
    if current_state == S.CANCELING:
        # a requested cancel wins over whatever the attempt did: nothing is kept, nothing retried
        return Decision(S.CANCELED, outputs_discarded=end is AttemptEnd.SUCCEEDED)
    policy = POLICIES[end]
    attempts_left = attempt < (max_attempts or get_settings().retry.max_attempts)
    if policy.retried and attempts_left:
        return Decision(S.QUEUED, retry_in_seconds=retry_delay_seconds(attempt + 1))
    if policy.escalates and can_escalate and attempts_left:
        return Decision(S.QUEUED, retry_in_seconds=0, escalated=True)  # no fault to wait out
    return Decision(policy.state)
