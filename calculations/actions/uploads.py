"""Presigned uploads (design brief §6): the client PUTs the parts of an S3 multipart upload itself;
completing it verifies the bytes, gives them their content-addressed key, and registers the file.

States (`UploadState`): OPEN → COMPLETING → COMPLETE | FAILED, OPEN → ABORTED (the client) or
EXPIRED (the sweeper, past `expires_at`). One request at a time holds COMPLETING: a second complete
or an abort meanwhile is a 409. Completing a COMPLETE upload again answers its file, so a client
whose first answer was lost can simply retry. Parts missing at completion leave the upload OPEN
(PUT them, complete again); bytes that do not match the declared size or sha256 fail it for good,
and its staged object is removed.

Each part URL signs the part's Content-Length, so a client cannot stage more than it declared, and
the declared size counts against the storage quota from the start (with the user's other unfinished
uploads). The file row itself is created by `do_register_blob`, with the same exact quota check as
an API upload.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from calculations.actions.access import access_upload_by_id
from calculations.actions.files import (
    check_storage_quota,
    check_upload_size,
    clean_file_name,
    do_register_blob,
    new_bytes,
)
from calculations.actions.users import lock_user
from calculations.errors import Conflict, InvalidInput, QuotaExceeded, StorageQuotaExceeded
from calculations.models import File, Upload, UploadState
from calculations.models.uploads import UNFINISHED_UPLOAD_STATES
from calculations.storage import BlobInfo, StorageError, get_storage
from calculations.storage.base import read_ahead
from calculations.storage.s3 import RejectedParts, S3BlobStorage, UploadNotFound
from emgapiv2.config import get_settings

logger = logging.getLogger(__name__)
U = UploadState
MAX_PARTS = 10_000  # S3's limit per multipart upload
MAX_OBJECT_BYTES = 5 * 1024**4  # and of one object
_MIB = 1024**2


@dataclass(frozen=True)
class PresignedPart:
    part_number: int
    size: int
    url: str


def part_sizes(size: int, part_bytes: int) -> tuple[int, list[int]]:
    """The part size (`part_bytes`, or more for an upload that would need over 10,000 parts) and
    each part's size; an empty file is one empty part."""
    part_size = part_bytes
    if size > part_bytes * MAX_PARTS:
        part_size = -(-size // (MAX_PARTS * _MIB)) * _MIB  # whole MiB, enough for 10,000 parts
    count = max(1, -(-size // part_size))
    return part_size, [part_size] * (count - 1) + [size - part_size * (count - 1)]


def _s3_storage() -> S3BlobStorage:
    storage = get_storage()
    if not isinstance(storage, S3BlobStorage):
        raise Conflict(
            "presigned uploads need S3 storage (EMGAPI_STORAGE__BACKEND=s3), and this deployment keeps files on "
            "its filesystem: upload through the API instead, POST /api/v2/files (multipart/form-data, one field "
            "named 'file'; e.g. curl -F file=@genome.fna)"
        )
    return storage


def presigned_parts(upload: Upload) -> list[PresignedPart]:
    """URLs to PUT each part of an OPEN upload to, valid until it expires (none otherwise)."""
    seconds_left = int((upload.expires_at - timezone.now()).total_seconds())
    if upload.state != U.OPEN or seconds_left <= 0:
        return []
    storage = _s3_storage()
    _, sizes = part_sizes(upload.size, upload.part_size)
    return [
        PresignedPart(number, size, storage.presign_part(upload.key, upload.s3_upload_id, number, size, seconds_left))
        for number, size in enumerate(sizes, start=1)
    ]


def check_create_upload(owner_id: int, name: str, size: int, sha256: str | None) -> Upload:
    """Start a presigned upload of `size` bytes (and, if given, this sha256) for the user."""
    storage = _s3_storage()
    check_upload_size(size)
    if size > MAX_OBJECT_BYTES:
        raise StorageQuotaExceeded(f"the file is {size} bytes; S3 holds objects of at most {MAX_OBJECT_BYTES}")
    settings = get_settings().uploads
    part_size, _ = part_sizes(size, settings.part_bytes)
    _check_upload_quota(owner_id, size, sha256)  # before S3 is asked for anything
    upload_id = uuid4()
    key = storage.staging_key(str(upload_id))
    s3_upload_id = storage.start_multipart(key)
    try:
        with transaction.atomic():
            _check_upload_quota(owner_id, size, sha256, lock=True)  # again, one of the user's requests at a time
            return Upload.objects.create(
                id=upload_id,
                owner_id=owner_id,
                name=clean_file_name(name),
                size=size,
                sha256=sha256 or "",
                part_size=part_size,
                key=key,
                s3_upload_id=s3_upload_id,
                expires_at=timezone.now() + timedelta(hours=settings.expiry_hours),
            )
    except BaseException:
        storage.abort_multipart(key, s3_upload_id)
        raise


def _check_upload_quota(owner_id: int, size: int, sha256: str | None, *, lock: bool = False) -> None:
    if lock:  # the order every action takes: the user's row first
        lock_user(owner_id)
    unfinished = Upload.objects.filter(owner_id=owner_id, state__in=UNFINISHED_UPLOAD_STATES)
    count = unfinished.count()
    limit = get_settings().uploads.max_open
    if count >= limit:
        raise QuotaExceeded(
            f"you have {count} unfinished uploads and the limit is {limit}: complete them "
            "(POST /api/v2/uploads/{id}/complete) or abort them (DELETE /api/v2/uploads/{id})"
        )
    pending = int(unfinished.aggregate(total=Sum("size"))["total"] or 0)
    # a declared sha256 the user holds adds nothing (a false one fails the upload at completion)
    adding = new_bytes(owner_id, [(sha256, size)]) if sha256 else size
    what = f"this upload with your {count} unfinished one(s) ({pending} bytes)" if count else "this upload"
    check_storage_quota(owner_id, adding + pending, what)


def _move(upload_id: UUID, sources: frozenset[str] | set[str], target: UploadState, **fields: object) -> bool:
    """The conditional UPDATE every state change of an upload is: False if it was no longer in `sources`."""
    updated = Upload.objects.filter(id=upload_id, state__in=sources).update(
        state=target, updated_at=timezone.now(), **fields
    )
    return updated == 1


def _refusal(upload: Upload) -> Conflict | None:
    """Why this upload cannot be completed or aborted now (None: it is OPEN and not expired)."""
    reference = f"upload {upload.id}"
    if upload.state == U.COMPLETING:
        return Conflict(f"{reference} is being completed by another request: GET /api/v2/uploads/{upload.id}")
    if upload.state == U.COMPLETE and upload.file_id is None:
        return Conflict(f"{reference} was completed, and its file has been deleted since")
    if upload.state == U.COMPLETE:
        return Conflict(
            f"{reference} is complete: it is file {upload.file_id} (DELETE /api/v2/files/{upload.file_id} deletes it)"
        )
    if upload.state == U.FAILED:
        return Conflict(f"{reference} failed: {upload.error}")
    if upload.state in (U.ABORTED, U.EXPIRED):
        return Conflict(f"{reference} was {upload.state.lower()}: start a new upload")
    if upload.expires_at <= timezone.now():
        return Conflict(f"{reference} expired at {upload.expires_at.isoformat()}: start a new upload")
    return None


def do_abort_upload(owner_id: int, upload_id: UUID) -> None:
    """Abort the user's unfinished upload: its parts are discarded. Aborting one that was aborted,
    expired or failed already changes nothing; a complete one is a 409 (delete its file instead)."""
    with transaction.atomic():
        upload = access_upload_by_id(owner_id, upload_id, for_update=True)
        if upload.state in (U.ABORTED, U.EXPIRED, U.FAILED):
            return
        if upload.state != U.OPEN:
            refusal = _refusal(upload)
            assert refusal is not None
            raise refusal
        # under the row's lock: a complete arriving now waits, then finds it ABORTED
        _discard(upload, assembled=False)
        _move(upload.id, {U.OPEN}, U.ABORTED)


def _discard(upload: Upload, *, assembled: bool) -> None:
    """Remove what S3 holds of an upload: its parts, and the assembled object if there is one."""
    storage = get_storage()
    if not isinstance(storage, S3BlobStorage):  # the deployment moved off S3 since: nothing to reach
        return
    if not assembled:
        storage.abort_multipart(upload.key, upload.s3_upload_id)
    storage.delete_key(upload.key)


def do_expire_uploads(*, limit: int = 200) -> int:
    """Abort uploads left unfinished past their expiry (and completions whose request died); return
    how many. A failure to reach S3 leaves an upload for the next pass."""
    now = timezone.now()
    stuck_before = now - timedelta(hours=get_settings().uploads.expiry_hours)
    due_filter = Q(state=U.OPEN, expires_at__lt=now) | Q(state=U.COMPLETING, updated_at__lt=stuck_before)
    expired = 0
    for upload_id in list(Upload.objects.filter(due_filter).values_list("id", flat=True)[:limit]):
        with transaction.atomic():
            upload = Upload.objects.select_for_update().filter(due_filter, id=upload_id).first()
            if upload is None:  # completed or aborted meanwhile
                continue
            try:
                # a stuck completion may have assembled its object already: aborting then is a no-op
                _discard(upload, assembled=False)
            except StorageError:
                continue
            hours = get_settings().uploads.expiry_hours
            _move(upload.id, {upload.state}, U.EXPIRED, error=f"not completed within {hours:g} h; aborted")
            expired += 1
    return expired


def do_complete_upload(owner_id: int, upload_id: UUID, parts: Sequence[tuple[int, str]] | None) -> tuple[File, bool]:
    """Complete the user's upload: assemble its parts, verify size and sha256 by streaming the
    object, store it under its content address, register the file. Returns the file, and whether it
    was created now (False: the upload was completed before, and this answers its file again)."""
    with transaction.atomic():
        upload = access_upload_by_id(owner_id, upload_id, for_update=True)
        if upload.state == U.COMPLETE and upload.file_id is not None:
            return File.objects.get(id=upload.file_id), False  # (deleting the file clears file_id)
        if (refusal := _refusal(upload)) is not None:
            raise refusal
        _s3_storage()  # before the state changes: a deployment that left S3 cannot complete it
        _move(upload.id, {U.OPEN}, U.COMPLETING)
    # the long part (S3 listing, assembly, a read of every byte, a copy) holds no lock or transaction
    return _CompleteUpload(upload, parts).run(), True


class _KeepOpen(Exception):
    """A refusal that leaves the upload OPEN, for the client to fix and complete again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _CompleteUpload:
    """One completion. A refusal before the parts are assembled leaves the upload OPEN; after, any
    failure fails it for good and removes the assembled object."""

    def __init__(self, upload: Upload, parts: Sequence[tuple[int, str]] | None) -> None:
        self.upload, self.parts, self.storage = upload, parts, _s3_storage()
        self.assembled = False

    def run(self) -> File:
        try:
            file = self._assemble_verify_register()
        except _KeepOpen as exc:
            _move(self.upload.id, {U.COMPLETING}, U.OPEN)
            raise exc.error from None
        except BaseException as exc:
            self._fail(exc)
            raise
        try:
            self.storage.delete_key(self.upload.key)
        except StorageError:
            logger.warning("upload %s: could not delete its staged object %s", self.upload.id, self.upload.key)
        return file

    def _assemble_verify_register(self) -> File:
        upload = self.upload
        try:
            self.storage.complete_multipart(upload.key, upload.s3_upload_id, self._parts_to_assemble())
        except RejectedParts as exc:
            try:  # some S3 servers drop an upload whose completion they refused, others keep it
                self.storage.list_parts(upload.key, upload.s3_upload_id)
            except UploadNotFound:
                raise Conflict(f"upload {upload.id} failed: S3 refused its parts ({exc})") from exc
            raise _KeepOpen(InvalidInput(f"S3 refused the parts: {exc}")) from exc
        except UploadNotFound as exc:
            raise Conflict(
                f"upload {upload.id} failed: its parts are gone from S3 ({exc}); start a new upload"
            ) from exc
        except StorageError as exc:
            raise _KeepOpen(exc) from exc  # nothing assembled: the client may complete again later
        self.assembled = True
        info = self._verified()
        self.storage.promote(upload.key, info)
        file = do_register_blob(upload.owner_id, upload.name, info, and_then=self._mark_complete)
        if not self.storage.exists(info.sha256):  # the sweep collected it just before the row existed
            self.storage.promote(upload.key, info)
        return file

    def _parts_to_assemble(self) -> list[tuple[int, str]]:
        upload = self.upload
        _, sizes = part_sizes(upload.size, upload.part_size)
        staged = {part.number: part for part in self.storage.list_parts(upload.key, upload.s3_upload_id)}
        missing = [number for number in range(1, len(sizes) + 1) if number not in staged]
        if missing:
            raise _KeepOpen(
                Conflict(
                    f"part(s) {_numbers(missing)} of {len(sizes)} have not been uploaded: PUT each to its URL "
                    f"(GET /api/v2/uploads/{upload.id} lists them), then complete again"
                )
            )
        received = sum(part.size for part in staged.values())
        if received != upload.size or len(staged) != len(sizes):
            raise self._mismatch(f"size mismatch: expected {upload.size} bytes, got {received}")
        if self.parts is not None:
            # checked here rather than by S3, which may drop the whole upload when it refuses a completion
            if sorted(number for number, _ in self.parts) != list(range(1, len(sizes) + 1)):
                raise _KeepOpen(InvalidInput(f"parts: name each of the parts 1 to {len(sizes)} once (or send no body)"))
            for number, etag in self.parts:
                if etag.strip('"') != staged[number].etag.strip('"'):  # compared, never parsed
                    raise _KeepOpen(
                        InvalidInput(
                            f"parts: part {number}'s ETag is not the one S3 holds ({staged[number].etag}); was it "
                            "uploaded again? Complete without a body to use the parts S3 holds"
                        )
                    )
        return [(number, staged[number].etag) for number in sorted(staged)]

    def _verified(self) -> BlobInfo:
        """Digest and size of the assembled object, read once in chunks (constant memory)."""
        digest, size = hashlib.sha256(), 0
        for chunk in read_ahead(self.storage.iter_key(self.upload.key)):
            digest.update(chunk)
            size += len(chunk)
        if size != self.upload.size:
            raise self._mismatch(f"size mismatch: expected {self.upload.size} bytes, got {size}")
        if self.upload.sha256 and digest.hexdigest() != self.upload.sha256:
            raise self._mismatch(f"sha256 mismatch: expected {self.upload.sha256}, got {digest.hexdigest()}")
        return BlobInfo(sha256=digest.hexdigest(), size=size)

    def _mismatch(self, what: str) -> InvalidInput:
        return InvalidInput(f"upload {self.upload.id} failed: {what}; its bytes were removed, start a new upload")

    def _mark_complete(self, file: File) -> None:
        if not _move(self.upload.id, {U.COMPLETING}, U.COMPLETE, file=file, error=""):
            raise Conflict(f"upload {self.upload.id} expired while it was being completed: start a new upload")

    def _fail(self, exc: BaseException) -> None:
        """Fail the upload for good, saying why, and remove what S3 holds of it."""
        if isinstance(exc, (InvalidInput, Conflict, QuotaExceeded)):
            reason = str(exc).removeprefix(f"upload {self.upload.id} failed: ")
        elif isinstance(exc, StorageError):
            reason = f"storage failed while completing it: {exc}; start a new upload"
        else:
            reason = f"completing it failed ({type(exc).__name__})"
        _move(self.upload.id, {U.COMPLETING}, U.FAILED, error=reason[:2000])
        try:
            _discard(self.upload, assembled=self.assembled)
        except StorageError:
            logger.warning("upload %s: could not remove its parts or staged object %s", self.upload.id, self.upload.key)


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:20]))
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
