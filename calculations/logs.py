"""Reading a calculation's tool logs: from storage once the attempt ended, else from its work dir.

Three ways: the tails of the streams (`read_logs`, `read_log_tail`), one stream from a byte offset,
a bounded chunk at a time (`read_log_chunk`), for a client following a running tool (`emgapi logs
--follow`), or one stream whole (`iter_log`, the admin's download).
An attempt's stored log blob holds exactly the bytes its work-dir file held, so offsets stay valid
when the source moves from the file to storage as the attempt ends.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from calculations.errors import InvalidInput
from calculations.models import Calculation
from calculations.provenance import Provenance
from calculations.schemas import LogChunkOut, LogsOut
from calculations.states import TERMINAL_STATES
from calculations.storage import BlobNotFound, get_storage
from calculations.storage.base import CHUNK_BYTES
from calculations.workdirs import log_paths
from emgapiv2.config import get_settings

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")  # in the order log_paths and the provenance give them


def _tail_of_blob(sha256: str | None, size_limit: int) -> tuple[str, bool]:
    if sha256 is None:
        return "", False
    data = b""
    try:
        for chunk in get_storage().iter_chunks(sha256):
            data = (data + chunk)[-size_limit - 1 :]
    except BlobNotFound:
        return "", False
    return data[-size_limit:].decode("utf-8", errors="replace"), len(data) > size_limit


def tail_of_file(path: Path, size_limit: int) -> tuple[str, bool]:
    """The last `size_limit` bytes of a file as text, and whether anything was cut."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - size_limit, 0))
            return handle.read().decode("utf-8", errors="replace"), size > size_limit
    except OSError:
        return "", False


def _stored_logs(calc: Calculation, attempt: int) -> tuple[str | None, str | None] | None:
    """The sha256s of an attempt's stored stdout and stderr; None while they are not stored (its work
    dir holds them)."""
    record = next((r for r in Provenance.model_validate(calc.provenance).attempts if r.attempt == attempt), None)
    if record is not None and (record.stdout_sha256 or record.stderr_sha256):
        return record.stdout_sha256, record.stderr_sha256
    return None


def read_log_tail(calc: Calculation, stream: Stream, size_limit: int) -> tuple[str, bool]:
    """The last `size_limit` bytes of one stream of the current attempt, and whether anything was cut."""
    stored = _stored_logs(calc, calc.attempt)
    if stored is not None:
        return _tail_of_blob(stored[STREAMS.index(stream)], size_limit)
    return tail_of_file(log_paths(calc.id, calc.attempt)[STREAMS.index(stream)], size_limit)


def read_logs(calc: Calculation) -> LogsOut:
    limit = get_settings().log_tail_bytes
    stdout, stdout_cut = read_log_tail(calc, "stdout", limit)
    stderr, stderr_cut = read_log_tail(calc, "stderr", limit)
    return LogsOut(attempt=calc.attempt, stdout=stdout, stderr=stderr, truncated=stdout_cut or stderr_cut)


def iter_log(calc: Calculation, stream: Stream) -> Iterator[bytes]:
    """The whole of one stream of the current attempt, in chunks: stored, or as its work dir holds it."""
    stored = _stored_logs(calc, calc.attempt)
    if stored is not None:
        if (sha256 := stored[STREAMS.index(stream)]) is not None:
            try:
                yield from get_storage().iter_chunks(sha256)
            except BlobNotFound:
                return
        return
    try:
        with log_paths(calc.id, calc.attempt)[STREAMS.index(stream)].open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
    except OSError:  # not started yet, or its directory went
        return


def _utf8_whole(data: bytes) -> int:
    """How many leading bytes of `data` end on a UTF-8 character boundary (a chunk cut there never
    splits a character between two responses)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for its lead byte
            continue
        needed = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF8 else 1
        return len(data) - back if back < needed else len(data)
    return len(data)  # no lead byte within 4 bytes: not UTF-8 there, cut anywhere


def _read_file_range(path: Path, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as handle:
            if offset >= os.fstat(handle.fileno()).st_size:  # seek() past the filesystem's limit is EINVAL
                return b""
            handle.seek(offset)
            return handle.read(size)
    except OSError:  # not started yet, or its directory just went after the logs were stored
        return b""


def read_log_chunk(
    calc: Calculation, stream: Literal["stdout", "stderr"], offset: int, attempt: int | None = None
) -> LogChunkOut:
    """Up to `log_chunk_bytes` of one stream of one attempt (default: the current one) from `offset`:
    from its stored blob once the attempt ended, else live from its work-dir file. An offset past
    the end answers no data."""
    attempt = attempt or calc.attempt
    if attempt > calc.attempt:
        raise InvalidInput(f"attempt: calculation {calc.id} has {calc.attempt} attempt(s)")
    limit = get_settings().log_chunk_bytes
    # read the row's state before the bytes: a stream that has ended then has all its bytes
    ended = attempt < calc.attempt or calc.state in TERMINAL_STATES
    record = next((r for r in Provenance.model_validate(calc.provenance).attempts if r.attempt == attempt), None)
    sha256 = None if record is None else (record.stdout_sha256 if stream == "stdout" else record.stderr_sha256)
    data = b""
    if sha256 is not None:
        try:
            data = b"".join(get_storage().iter_chunks(sha256, offset=offset, limit_bytes=limit + 1))
        except BlobNotFound:
            data = b""
    else:  # running, or it ended without storing its logs: whatever its work dir still holds
        stdout_path, stderr_path = log_paths(calc.id, attempt)
        data = _read_file_range(stdout_path if stream == "stdout" else stderr_path, offset, limit + 1)
    at_end = len(data) <= limit
    data = data[:limit]
    if not (at_end and ended):  # more may follow: end on a character boundary
        data = data[: _utf8_whole(data)]
    return LogChunkOut(
        attempt=attempt,
        stream=stream,
        offset=offset,
        next_offset=offset + len(data),
        data=data.decode("utf-8", errors="replace"),
        complete=at_end and ended,
    )
