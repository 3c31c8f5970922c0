"""Files: blobs stored first, then the user's row that points at them; deleting a row; the storage
quota, which counts the distinct bytes a user holds; blobs no row references any more.

A blob that loses its last row is recorded as an `OrphanBlob` and deleted by the sweep after a
grace period. Storing the same bytes again races with that sweep, so both sides take the blob's
lock: whoever gives the blob a row removes its orphan record first, and the sweep deletes only a
blob that is still an orphan under that lock (and a row created just after finds its blob gone and
stores it again).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO
from uuid import UUID

from django.db import transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from calculations.actions.access import access_file_by_id
from calculations.actions.quotas import storage_limit
from calculations.actions.rows import first_row
from calculations.actions.transitions import lock_blob
from calculations.actions.users import lock_user
from calculations.errors import Conflict, StorageQuotaExceeded
from calculations.models import Calculation, File, HeldBytes, OrphanBlob, TesTask
from calculations.states import ACTIVE_STATES
from calculations.storage import BlobInfo, StorageError, get_storage
from calculations.storage.base import hash_stream
from emgapiv2.config import get_settings

_UNSAFE_NAME_CHARACTERS = re.compile(r"[\x00-\x1f\x7f/\\]")
FREE_SPACE_HINT = "delete files you no longer need: DELETE /api/v2/files/{id} (GET /api/v2/files lists them)"


def clean_file_name(name: str) -> str:
    """A display name safe anywhere: no directories, no control characters, not empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME_CHARACTERS.sub("_", base).strip().lstrip(".")
    return base[:255] or "upload"


@dataclass(frozen=True)
class OutputBlob:
    """An output the worker stored: its role, file name, and blob."""

    role: str
    name: str
    sha256: str
    size: int


def held_bytes(owner_id: int) -> int:
    """The bytes a user holds: each distinct content once, however many files (copies, cache hits,
    outputs identical to an upload) point at it. The running total (`HeldBytes`), kept by `_hold`
    and `_unhold` as rows come and go."""
    held = first_row(HeldBytes.objects.filter(user_id=owner_id).values_list("bytes", flat=True))
    return int(held or 0)


def count_held_bytes(owner_id: int) -> int:
    """`held_bytes` summed afresh from the user's files (a read of all of them)."""
    distinct = File.objects.filter(owner_id=owner_id).order_by().values("sha256").annotate(size=Max("size"))
    return int(distinct.aggregate(total=Sum("size"))["total"] or 0)


def _add_held(owner_id: int, change: int) -> None:
    if change and not HeldBytes.objects.filter(user_id=owner_id).update(bytes=F("bytes") + change):
        HeldBytes.objects.get_or_create(user_id=owner_id)
        HeldBytes.objects.filter(user_id=owner_id).update(bytes=F("bytes") + change)


def _hold(owner_id: int, blobs: Iterable[tuple[str, int]]) -> None:
    """The user gets rows for these (sha256, size) blobs now: count the ones they did not hold.
    Call under each blob's lock, before the rows exist (a row of the same bytes, made or deleted
    meanwhile, takes the same lock)."""
    _add_held(owner_id, new_bytes(owner_id, blobs))


def _unhold(owner_id: int, sha256: str, size: int) -> None:
    """A row of this blob went (under its lock): the user no longer holds it if it was their last."""
    if not File.objects.filter(owner_id=owner_id, sha256=sha256).exists():
        _add_held(owner_id, -size)


def new_bytes(owner_id: int, blobs: Iterable[tuple[str, int]]) -> int:
    """How many bytes of these (sha256, size) blobs the user does not hold yet."""
    sizes = dict(blobs)
    # (unordered: ordered by date, the planner scans all of the user's files instead of (owner, sha256))
    held = set(File.objects.filter(owner_id=owner_id, sha256__in=sizes).order_by().values_list("sha256", flat=True))
    return sum(size for sha256, size in sizes.items() if sha256 not in held)


def reserved_scratch_bytes(owner_id: int, *, excluding: UUID | None = None) -> int:
    """Scratch space the user's GA4GH TES tasks in flight reserved (`resources.disk_gb`): counted as
    held from submission until each task ends, so that no task's directories, which the worker keeps
    within that space, can take the user past their quota."""
    # a task is never a workflow's step: saying so keeps the read off a map's queued steps
    tasks = TesTask.objects.filter(
        calculation__owner_id=owner_id, calculation__state__in=ACTIVE_STATES, calculation__workflow_run__isnull=True
    )
    if excluding is not None:
        tasks = tasks.exclude(calculation_id=excluding)
    return sum(int(size or 0) for size in tasks.values_list("spec__resources__disk_bytes", flat=True))


def quota_message(owner_id: int, adding_bytes: int, what: str, *, excluding: UUID | None = None) -> str | None:
    """Why adding `adding_bytes` new bytes would exceed the user's quota, or None if it fits.
    `excluding`: a TES task whose own reservation makes way for what it adds (its outputs)."""
    quota = storage_limit(owner_id)
    used = held_bytes(owner_id)
    reserved = reserved_scratch_bytes(owner_id, excluding=excluding)
    if used + reserved + adding_bytes <= quota:
        return None
    # refused by the running total: counted afresh first, so that no one is refused wrongly (rows
    # deleted other than by `do_delete_file`, such as with a deleted calculation, leave it high)
    if (exact := count_held_bytes(owner_id)) != used:
        _add_held(owner_id, exact - used)
        used = exact
        if used + reserved + adding_bytes <= quota:
            return None
    scratch = f", your GA4GH TES tasks in flight reserve {reserved} bytes of scratch space" if reserved else ""
    return (
        f"storage quota exceeded: you hold {used} bytes (identical contents count once){scratch}, {what} is "
        f"{adding_bytes} more, and the quota is {quota}; {FREE_SPACE_HINT}"
    )


def check_storage_quota(owner_id: int, adding_bytes: int, what: str = "this file") -> None:
    if message := quota_message(owner_id, adding_bytes, what):
        raise StorageQuotaExceeded(message)


def check_scratch_quota(owner_id: int, disk_bytes: int) -> None:
    """A TES task's scratch space is reserved at submission (call with the user's row locked)."""
    check_storage_quota(owner_id, disk_bytes, "this task's scratch space (resources.disk_gb)")


def check_upload_size(size: int) -> None:
    """The one size limit of a file a user sends, however it comes (API upload or presigned)."""
    limit = get_settings().max_upload_bytes
    if size > limit:
        raise StorageQuotaExceeded(f"the file is {size} bytes; the limit is {limit} bytes per file")


def _claim_blob(sha256: str) -> None:
    """The blob gets a row now: it is no orphan (call under its lock, in the row's transaction)."""
    OrphanBlob.objects.filter(sha256=sha256).delete()


def _release_blob(sha256: str) -> None:
    """A row of this blob went (or never came): if none is left, the sweep may collect it."""
    if not File.objects.filter(sha256=sha256).exists():
        # noticed now: a record left from an earlier time must not shorten this grace period
        OrphanBlob.objects.update_or_create(sha256=sha256, defaults={"noticed_at": timezone.now()})


def do_create_file(owner_id: int, name: str, stream: BinaryIO) -> File:
    """Store an upload (a seekable stream: Django's spool) and give the user a row for it."""
    # the digest first (a read of the local spool), so that the quota is exact before anything is
    # stored: bytes the user already holds add nothing
    known = hash_stream(stream)
    check_storage_quota(owner_id, new_bytes(owner_id, [(known.sha256, known.size)]))
    stream.seek(0)
    # store the bytes (outside the transaction: it may take long)
    storage = get_storage()
    info = storage.put(stream)
    file = do_register_blob(owner_id, name, info)
    if not storage.exists(info.sha256):  # the sweep collected it just before the row existed
        stream.seek(0)
        storage.put(stream)
    return file


def do_register_blob(
    owner_id: int, name: str, info: BlobInfo, *, and_then: Callable[[File], None] | None = None
) -> File:
    """Give the user a row for a blob already stored (an API upload, a completed presigned upload),
    with the quota checked exactly. `and_then` runs in the row's transaction (its failure undoes it).
    The caller then checks that the blob still exists: the sweep may have collected it just before."""
    try:
        with transaction.atomic():
            # the user first (concurrent uploads of one user are checked against the quota one at a
            # time), then the blob: the order every action takes them in
            lock_user(owner_id)
            lock_blob(info.sha256)
            # exact now that the digest is known: bytes the user already holds add nothing
            adding = new_bytes(owner_id, [(info.sha256, info.size)])
            check_storage_quota(owner_id, adding)
            _claim_blob(info.sha256)
            _add_held(owner_id, adding)
            file = File.objects.create(
                owner_id=owner_id, name=clean_file_name(name), size=info.size, sha256=info.sha256
            )
            if and_then is not None:
                and_then(file)
    except BaseException:
        with transaction.atomic():
            lock_blob(info.sha256)
            _release_blob(info.sha256)  # stored for nothing: collected like any orphan
        raise
    return file


@transaction.atomic
def do_delete_file(owner_id: int, file_id: UUID) -> None:
    """Delete a user's file. One that a calculation in flight reads is a 409; a finished
    calculation keeps its input's sha256 in its provenance. The blob goes once no row is left."""
    file = access_file_by_id(owner_id, file_id)
    File.objects.select_for_update().filter(id=file.id).first()  # against a submission naming it now
    readers = list(
        Calculation.objects.filter(inputs__file_id=file.id, state__in=ACTIVE_STATES).values_list("id", flat=True)[:5]
    )
    if readers:
        raise Conflict(
            f"file {file.id} is an input of calculation(s) {', '.join(map(str, readers))} still in flight; "
            "cancel them or wait until they have finished, then delete it"
        )
    lock_blob(file.sha256)
    file.delete()
    _unhold(owner_id, file.sha256, file.size)
    _release_blob(file.sha256)


def lock_blobs(outputs: Sequence[OutputBlob]) -> None:
    """Each output's blob lock, in one order (`lock_blob`)."""
    for sha256 in sorted({output.sha256 for output in outputs}):
        lock_blob(sha256)


def add_output_files(
    calc: Calculation, outputs: Sequence[OutputBlob], *, claim: bool = True, new: int | None = None
) -> None:
    """Output rows of `calc`, owned by its owner, pointing at stored blobs (call within its action).
    `claim`: the worker just stored these blobs, so they may be orphans awaiting the sweep. `new`:
    their `new_bytes`, if the caller took their locks (`lock_blobs`) and counted them already."""
    storage = get_storage()
    if new is None:
        lock_blobs(outputs)
    for sha256 in sorted({output.sha256 for output in outputs}):
        if claim:
            _claim_blob(sha256)
            if not storage.exists(sha256):  # collected between the worker's store and now: a platform fault
                raise StorageError(f"output blob {sha256} vanished before it was registered")
    if new is None:
        _hold(calc.owner_id, [(output.sha256, output.size) for output in outputs])
    else:
        _add_held(calc.owner_id, new)
    File.objects.bulk_create(
        File(
            owner_id=calc.owner_id,
            name=output.name,
            size=output.size,
            sha256=output.sha256,
            produced_by=calc,
            output_role=output.role,
        )
        for output in outputs
    )


@transaction.atomic
def do_release_outputs(outputs: Sequence[OutputBlob]) -> None:
    """Outputs the worker stored that were not registered (the attempt ended otherwise): orphans,
    unless some row already holds the same bytes."""
    lock_blobs(outputs)
    for sha256 in sorted({output.sha256 for output in outputs}):
        _release_blob(sha256)


def do_collect_orphan_blobs(grace: timedelta, *, limit: int = 200) -> int:
    """Delete blobs that have had no row for longer than `grace`; return how many went."""
    storage = get_storage()
    collected = 0
    due = OrphanBlob.objects.filter(noticed_at__lt=timezone.now() - grace).values_list("sha256", flat=True)
    for sha256 in list(due[:limit]):  # a bounded batch: each pass holds the worker's database thread
        with transaction.atomic():
            lock_blob(sha256)
            if File.objects.filter(sha256=sha256).exists():
                OrphanBlob.objects.filter(sha256=sha256).delete()  # wanted again meanwhile
                continue
            if not OrphanBlob.objects.filter(sha256=sha256).exists():
                continue
            storage.delete(sha256)  # inside the lock: no row can be created for it meanwhile
            OrphanBlob.objects.filter(sha256=sha256).delete()
            collected += 1
    return collected
