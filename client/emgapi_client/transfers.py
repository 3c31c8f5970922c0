"""Moving bytes: hashing while they stream (never a whole file in memory), safe local file names
(whatever the server says, nothing is written outside the directory asked for), and spotting what a
log tail adds to the previous one."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
from pathlib import Path, PurePath
from typing import BinaryIO

from emgapi_client.errors import UnsafeFileName
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


# what a file name written here may not hold: path separators, and control characters (a name is
# also printed to the terminal); the reserved characters of Windows too, on Windows
_UNSAFE_IN_NAMES = re.compile(r'[\x00-\x1f\x7f-\x9f/\\<>:"|?*]' if os.name == "nt" else r"[\x00-\x1f\x7f-\x9f/\\]")
MAX_NAME_BYTES = 200  # below every filesystem's 255, leaving room for a partial download's affixes


def safe_file_name(name: str, fallback: str) -> str:
    """One path component made of a server-given name, which cannot point outside the directory it
    is written in: its last component (`../x`, `/etc/x`, `..\\x` give `x`), control characters
    replaced, at most `MAX_NAME_BYTES` (its extension kept); `fallback` if nothing usable is left."""
    base = _UNSAFE_IN_NAMES.sub("_", PurePath(name.replace("\\", "/")).name).strip()
    if base in ("", ".", ".."):
        return fallback
    if len(base.encode()) > MAX_NAME_BYTES:
        suffix = PurePath(base).suffix if len(PurePath(base).suffix) <= 16 else ""
        room = MAX_NAME_BYTES - len(suffix.encode())
        base = base[: -len(suffix) or None].encode()[:room].decode(errors="ignore") + suffix
    return base


def distinct_name(name: str, role: str, taken: set[str]) -> str:
    """`name` (a safe one), unless an earlier download of the same batch took it (compared without
    case: macOS and Windows compare so); then `<role>-<name>`, then `<role>-2-<name>`, … Adds the
    name chosen to `taken`."""
    prefix = safe_file_name(role, "output")[:40]  # short: a long name is cut at its end, never here
    candidates = itertools.chain([name, f"{prefix}-{name}"], (f"{prefix}-{n}-{name}" for n in itertools.count(2)))
    for candidate in candidates:
        chosen = safe_file_name(candidate, name)
        if chosen.casefold() not in taken:
            taken.add(chosen.casefold())
            return chosen
    raise AssertionError("unreachable: the candidates are endless")


def target_in(directory: Path, name: str) -> Path:
    """Where a download named `name` (one safe component) goes in `directory`, checked once resolved
    (the entry itself is not: a link there is replaced, never followed): a name that would still
    lead elsewhere (a drive on Windows) is refused."""
    target = directory / name
    if target.name != name or target.parent.resolve() != directory.resolve():
        raise UnsafeFileName(f"{name!r} would not be a file in {directory}: not written")
    return target


def open_exclusive(path: Path) -> BinaryIO:
    """A new file for writing, never an existing one nor a symbolic link's target."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o666), "wb")


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
