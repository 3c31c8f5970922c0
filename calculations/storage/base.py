"""The storage interface. Blobs are immutable and keyed by the sha256 of their bytes."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024


class StorageError(Exception):
    """The storage backend failed (a platform fault, not the user's)."""


class BlobNotFound(StorageError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int


class BlobStorage(Protocol):
    kind: str

    def put(self, stream: BinaryIO) -> BlobInfo:
        """Store the stream's bytes (read once, in chunks) and return their digest and size."""
        ...

    def put_path(self, path: Path) -> BlobInfo:
        """Store a local file."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None:
        """Remove a blob (no error if it is gone): only the orphan sweep calls this."""
        ...

    def iter_chunks(self, sha256: str, *, offset: int = 0, limit_bytes: int | None = None) -> Iterator[bytes]:
        """Stream a blob's bytes from `offset` (optionally only `limit_bytes` of them); an offset at or past
        the end yields nothing. Only the bytes asked for are read."""
        ...

    def copy_to_path(self, sha256: str, destination: Path) -> None:
        """Write a blob to a local file, streaming."""
        ...

    def check(self) -> None:
        """Raise StorageError if the storage cannot be reached or written."""
        ...


def hash_stream(stream: BinaryIO) -> BlobInfo:
    """Digest and size of what is left in `stream`, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return BlobInfo(sha256=digest.hexdigest(), size=size)


def hash_path(path: Path) -> BlobInfo:
    with path.open("rb") as handle:
        return hash_stream(handle)


def read_head(storage: BlobStorage, sha256: str, limit_bytes: int) -> bytes:
    """The first `limit_bytes` of a blob (for cheap format checks)."""
    return b"".join(storage.iter_chunks(sha256, limit_bytes=limit_bytes))[:limit_bytes]


def read_ahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """The same chunks, read by a thread of their own up to `depth` ahead, so that reading them (from
    S3, a disk) overlaps with what the caller does with each (hashing: about twice as fast for a
    large object). Memory: `depth` chunks. A read error is raised in the caller."""
    ready: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
    stopped = threading.Event()

    def hand_over(item: bytes | BaseException | None) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    return
            hand_over(None)
        except BaseException as exc:  # handed to the caller, who raises it
            hand_over(exc)

    reader = threading.Thread(target=read, name="read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()  # the caller stopped early (or failed): the reader gives up at its next chunk
        reader.join(5)
