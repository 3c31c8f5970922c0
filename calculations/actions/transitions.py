"""The one way a calculation's state changes: a guarded, fenced UPDATE plus an event row.

Every change is `UPDATE … WHERE state IN (sources of the target) AND attempt = N`, so a stale
worker or a duplicate delivery matches no row and is refused (InvalidTransition) instead of
overwriting newer state; each applied change appends a CalculationEvent (who, from, to, why).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import connection
from django.utils import timezone

from calculations.errors import InvalidTransition, NotFound
from calculations.models import Calculation, CalculationEvent
from calculations.states import CalculationState, sources_of

WORKER_ACTOR = "worker"
RECONCILER_ACTOR = "reconciler"


def user_actor(user_id: int) -> str:
    return f"user:{user_id}"


# Row locks are FOR NO KEY UPDATE: a transition changes no key, and a plain FOR UPDATE would block
# the KEY SHARE lock that inserting a follower (cached_from -> this row) takes, while the creator
# holds the cache key's lock the completion then wants: a deadlock, found by 50 concurrent submissions.


def lock_calculation(calculation_id: UUID) -> Calculation:
    """The calculation's row, locked until the transaction ends."""
    calc = Calculation.objects.select_for_update(no_key=True).filter(id=calculation_id).first()
    if calc is None:
        raise NotFound(f"calculation {calculation_id} not found")
    return calc


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


def record_event(calc: Calculation, from_state: str, to_state: str, actor: str, reason: str) -> None:
    CalculationEvent.objects.create(
        calculation=calc, attempt=calc.attempt, from_state=from_state, to_state=to_state, actor=actor, reason=reason
    )


def apply_transition(
    calc: Calculation,
    attempt: int,
    target: CalculationState,
    /,
    *,
    actor: str,
    reason: str = "",
    **fields: Any,
) -> Calculation:
    """Move attempt `attempt` of the locked row `calc` to `target` if the table allows it; log it.
    `fields` may set `attempt` too: a retry moves attempt N to QUEUED as attempt N + 1."""
    now = timezone.now()
    updated = Calculation.objects.filter(id=calc.id, attempt=attempt, state__in=sources_of(target)).update(
        state=target, updated_at=now, **fields
    )
    if not updated:
        raise InvalidTransition(
            f"calculation {calc.id} is {calc.state} (attempt {calc.attempt}); attempt {attempt} cannot move to {target}"
        )
    from_state = calc.state
    for name, value in {**fields, "state": target, "updated_at": now}.items():
        setattr(calc, name, value)
    record_event(calc, from_state, target, actor, reason)
    return calc


def transition(
    calculation_id: UUID, attempt: int, target: CalculationState, /, *, actor: str, reason: str = "", **fields: Any
) -> Calculation:
    """`apply_transition` on a row locked here (call inside a transaction)."""
    return apply_transition(lock_calculation(calculation_id), attempt, target, actor=actor, reason=reason, **fields)
