"""Who did what to a run, as people read it: an event's actor by username (the event rows name an
account by id, `user:5`, so that a renamed account stays right), and who asked a run to stop, and when."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from django.contrib.auth import get_user_model

from calculations.actions.transitions import ACCOUNT_IN_ACTOR
from calculations.run_kinds import RunKind
from calculations.states import RunState


def describe_actors(actors: Iterable[str]) -> dict[str, str]:
    """Each actor as an operator reads it (one query for all): `user:5` is the username, `staff:7`
    the staff member's username and "(staff)"; the platform's own actors (worker, reconciler) as they
    are, and an account deleted since as its id."""
    actors = set(actors)
    ids = {int(match[2]) for actor in actors for match in ACCOUNT_IN_ACTOR.finditer(actor)}
    names = dict(get_user_model().objects.filter(id__in=ids).values_list("id", "username")) if ids else {}

    def name(match: Any) -> str:
        username = names.get(int(match[2]))
        if username is None:
            return str(match[0])
        return username if match[1] == "user" else f"{username} (staff)"

    return {actor: ACCOUNT_IN_ACTOR.sub(name, actor) for actor in actors}


def describe_actor(actor: str) -> str:
    """One actor as `describe_actors` reads it."""
    return describe_actors([actor])[actor]


class CancelRequest(NamedTuple):
    by: str  # the actor, by username (`describe_actors`)
    at: datetime


_CANCEL_STATES = (RunState.CANCELING, RunState.CANCELED)


def cancel_requests(kind: RunKind[Any], run_ids: Iterable[UUID]) -> dict[UUID, CancelRequest]:
    """Who first asked each of these runs to stop, and when (runs no one asked are left out): the
    first event moving it to CANCELING, or to CANCELED at once. Two queries, however many runs."""
    field = f"{kind.event_field}_id"
    events = (
        kind.event_model.objects.filter(**{f"{field}__in": list(run_ids)}, to_state__in=_CANCEL_STATES)
        .order_by(field, "created_at", "id")
        .values_list(field, "actor", "created_at")
    )
    first: dict[UUID, tuple[str, datetime]] = {}
    for run_id, actor, created_at in events:
        first.setdefault(run_id, (actor, created_at))
    names = describe_actors(actor for actor, _ in first.values())
    return {run_id: CancelRequest(names[actor], at) for run_id, (actor, at) in first.items()}
