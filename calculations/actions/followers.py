"""Calculations that follow an identical one in flight (design brief §7): they take over its
success, or run on their own once it failed. Both sides work under the cache key's lock, as
`do_create_calculation` does, so a follower created at that moment either is seen here or sees
that its would-be leader ended (and does not follow it)."""

from __future__ import annotations

import json
import re
from typing import Any

from calculations.actions.files import OutputBlob, add_output_files
from calculations.actions.transitions import WORKER_ACTOR, apply_transition, lock_cache_key
from calculations.models import Calculation
from calculations.orchestrator import launch_after_commit
from calculations.states import RunState
from calculations.workdirs import staged_input_name

S = RunState


def copy_outputs(source: Calculation, target: Calculation) -> None:
    """`target` gets output rows of its own, pointing at `source`'s blobs."""
    outputs = source.output_files.order_by("output_role", "name")
    add_output_files(target, [OutputBlob(f.output_role, f.name, f.sha256, f.size) for f in outputs], claim=False)


def shared_provenance(source: Calculation, owner_id: int) -> dict[str, Any]:
    """`source`'s provenance as another calculation of `owner_id` may show it: another user's
    calculation id (in its work directory and argv paths) is redacted, and so are their file names
    in argv (recorded by calculations that staged inputs under them, before they were staged by role)."""
    if source.owner_id == owner_id:
        return dict(source.provenance)
    text = json.dumps(source.provenance).replace(str(source.id), "(another user's calculation)")
    provenance: dict[str, Any] = json.loads(text)
    roles = set(provenance.get("inputs", {}))
    for record in provenance.get("attempts", []):
        record["argv"] = [_staged_by_role(word, roles) for word in record.get("argv", [])]
    return provenance


# a staged input's path in an argv word: `…/inputs/<role>/<name>`
_STAGED_INPUT = re.compile(r"(?P<directory>(?:.*/)?inputs/(?P<role>[^/]+)/)(?P<name>[^/]+)")


def _staged_by_role(word: str, roles: set[str]) -> str:
    match = _STAGED_INPUT.fullmatch(word)
    if match is None or match["role"] not in roles:
        return word
    return match["directory"] + staged_input_name(match["role"], match["name"])


def _waiting_followers(leader: Calculation) -> list[Calculation]:
    lock_cache_key(leader.cache_key)
    waiting = Calculation.objects.filter(cached_from_id=leader.id, state=S.QUEUED).order_by()
    # (most calculations have none: asking first, under the key's lock, spares each end a locked read)
    if not waiting.exists():
        return []
    return list(waiting.select_for_update(no_key=True))


def complete_followers(leader: Calculation) -> None:
    """The leader completed: so does each follower, with its own output rows."""
    for follower in _waiting_followers(leader):
        apply_transition(
            follower,
            follower.attempt,
            S.COMPLETE,
            actor=WORKER_ACTOR,
            reason=f"identical calculation {leader.id} completed",
            provenance=shared_provenance(leader, follower.owner_id),
            started_at=leader.started_at,
            finished_at=leader.finished_at,
            exit_code=leader.exit_code,
        )
        copy_outputs(leader, follower)


def release_followers(leader: Calculation) -> None:
    """The leader ended without outputs: each follower now runs on its own, launched after commit."""
    for follower in _waiting_followers(leader):
        Calculation.objects.filter(id=follower.id).update(cached_from=None)
        launch_after_commit(follower)
