"""The one way a run's state changes, whatever its kind (a calculation, a workflow run): a guarded,
fenced UPDATE plus an event row.

Every change is `UPDATE … WHERE state IN (sources of the target) AND attempt = N`, so a stale
worker or a duplicate delivery matches no row and is refused (InvalidTransition) instead of
overwriting newer state; each applied change appends an event row of the run's kind (who, from, to, why),
and the outbox row of the notification the run asked for when it reaches that state.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from calculations.actions.notifications import enqueue_notification
from calculations.actions.rows import first_row
from calculations.errors import InvalidTransition, NotFound
from calculations.metrics import observe_change
from calculations.models import Calculation
from calculations.run_kinds import CALCULATION, Run, RunKind, kind_of
from calculations.states import RunState

WORKER_ACTOR = "worker"
RECONCILER_ACTOR = "reconciler"


def user_actor(user_id: int) -> str:
    return f"user:{user_id}"


def staff_actor(user_id: int) -> str:
    """A staff member acting in the Django admin (a cancel, a rerun)."""
    return f"staff:{user_id}"


# where an actor names an account (the admin shows its username instead)
ACCOUNT_IN_ACTOR = re.compile(r"\b(user|staff):(\d+)\b")


# Row locks are FOR NO KEY UPDATE: a transition changes no key, and a plain FOR UPDATE would block
# the KEY SHARE lock that inserting a follower (cached_from -> this row) takes, while the creator
# holds the cache key's lock the completion then wants: a deadlock, found by 50 concurrent submissions.


def lock_run(kind: RunKind[Run], run_id: UUID, *, defer: tuple[str, ...] = ()) -> Run:
    """The run's row, locked until the transaction ends (without the `defer` fields, read if used)."""
    run = first_row(kind.model.objects.select_for_update(no_key=True).defer(*defer).filter(id=run_id))
    if run is None:
        raise NotFound(f"{kind.name} {run_id} not found")
    return run


def lock_calculation(calculation_id: UUID) -> Calculation:
    return lock_run(CALCULATION, calculation_id)


CACHE_KEY_LOCKS, BLOB_LOCKS = 1, 2  # advisory lock spaces: a cache key and a blob never share a lock


def _lock_digest(space: int, hexdigest: str) -> None:
    # SQLite needs nothing: its IMMEDIATE transactions already serialise every writer
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [space, int(hexdigest[:7], 16)])


def lock_cache_key(cache_key: str) -> None:
    """Serialise everyone who creates, completes or fails calculations with this key, so a follower
    and its leader's end never miss each other."""
    _lock_digest(CACHE_KEY_LOCKS, cache_key)


def lock_blob(sha256: str) -> None:
    """Serialise whoever gives a blob a File row and the sweep that would delete it as an orphan."""
    _lock_digest(BLOB_LOCKS, sha256)


def record_event(run: Run, from_state: str, to_state: str, actor: str, reason: str) -> None:
    """Append the event row of a change of `run` (of any kind) to `to_state`."""
    kind = kind_of(run)
    event = kind.event_model.objects.create(
        **{kind.event_field: run},
        attempt=run.attempt,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        reason=reason,
    )
    # the notification the run asked for, if any: one insert in this transaction, sent by the worker
    # after commit, so it never delays the change (its event's id orders a run's notifications)
    enqueue_notification(run, to_state, event.id, event.created_at)
    observe_change(run, from_state, to_state)  # the counters and histograms, once this commits


def apply_transition(
    run: Run,
    attempt: int,
    target: RunState,
    /,
    *,
    actor: str,
    reason: str = "",
    **fields: Any,
) -> Run:
    """Move attempt `attempt` of the locked row `run` (of any kind) to `target` if its kind's table
    allows it; log it. `fields` may set `attempt` too: a retry moves attempt N to QUEUED as N + 1."""
    kind = kind_of(run)
    now = timezone.now()
    updated = kind.model.objects.filter(id=run.id, attempt=attempt, state__in=kind.sources_of(target)).update(
        state=target, updated_at=now, **fields
    )
    if not updated:
        raise InvalidTransition(
            f"{kind.name} {run.id} is {run.state} (attempt {run.attempt}); attempt {attempt} cannot move to {target}"
        )
    from_state = run.state
    for name, value in {**fields, "state": target, "updated_at": now}.items():
        setattr(run, name, value)
    record_event(run, from_state, target, actor, reason)
    return run


def transition(
    calculation_id: UUID, attempt: int, target: RunState, /, *, actor: str, reason: str = "", **fields: Any
) -> Calculation:
    """`apply_transition` on a calculation's row locked here (call inside a transaction)."""
    return apply_transition(lock_calculation(calculation_id), attempt, target, actor=actor, reason=reason, **fields)


def check_attempt(run: Run, attempt: int) -> None:
    """An attempt's end is recorded only by the attempt that is current (fencing)."""
    if run.attempt != attempt:
        raise InvalidTransition(
            f"{kind_of(run).name} {run.id} is on attempt {run.attempt} ({run.state}); attempt {attempt} ended too late"
        )


@transaction.atomic
def do_record_flow_run(kind: RunKind[Any], run_id: UUID, attempt: int, flow_run_id: UUID) -> bool:
    """Remember which Prefect flow run serves attempt `attempt` of a run; False if it moved on."""
    return bool(
        kind.model.objects.filter(id=run_id, attempt=attempt, flow_run_id__isnull=True).update(flow_run_id=flow_run_id)
    )
