"""Moving bytes: hashing while they stream (never a whole file in memory), safe local file names,
and spotting what a log tail adds to the previous one."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path, PurePath

from emgapi_client.types import ProgressCallback

CHUNK_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    """The sha256 of a local file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class HashingReader(io.BufferedReader):
    """A local file being uploaded: hashes and counts what the HTTP client reads from it, and reports
    progress. httpx sizes the request from its file descriptor (so it is sent with a Content-Length,
    never chunked) and rewinds it before reading, which starts the count afresh."""

    def __init__(self, path: Path, progress: ProgressCallback | None = None) -> None:
        super().__init__(io.FileIO(path, "r"), buffer_size=CHUNK_BYTES)
        self.total_bytes = path.stat().st_size
        self._progress = progress
        self._restart()

    def _restart(self) -> None:
        self.digest = hashlib.sha256()
        self.sent_bytes = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.digest.update(data)
        self.sent_bytes += len(data)
        if self._progress is not None and data:
            self._progress(self.sent_bytes, self.total_bytes)
        return data

    def seek(self, target: int, whence: int = io.SEEK_SET, /) -> int:
        position = super().seek(target, whence)
        if position == 0:
            self._restart()
        return position


def safe_file_name(name: str, fallback: str) -> str:
    """The last component of a server-given name, so that it cannot point outside the directory asked
    for (`../x`, `/etc/x`); `fallback` if nothing usable is left."""
    base = PurePath(name.replace("\\", "/")).name.strip()
    return base if base not in ("", ".", "..") else fallback


def unseen_text(previous: str, current: str) -> str:
    """What `current`, a tail of a growing log, adds to `previous`, an earlier tail of it: both are
    windows onto one stream, so what follows the longest end of `previous` that `current` starts with
    (all of `current` if they do not overlap: more than a window was written between the two reads)."""
    if current.startswith(previous):
        return current[len(previous) :]
    # the longest prefix of `current` that is a suffix of `previous`: the prefix function (KMP) of
    # current + separator + previous, where the separator matches nothing
    text: list[str | None] = [*current, None, *previous]
    border = [0] * len(text)
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + 1 if text[i] == text[k] else 0
    return current[border[-1] :]
