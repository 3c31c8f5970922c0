"""Blobs as read-only files under a root: `ab/cd/abcd…` (the embedded default)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from calculations.storage.base import CHUNK_BYTES, BlobInfo, BlobNotFound, StorageError, hash_path


class FilesystemBlobStorage:
    kind = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._incoming = root / ".incoming"

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _publish(self, temporary: Path, info: BlobInfo) -> BlobInfo:
        final = self._path(info.sha256)
        if final.exists():
            temporary.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(temporary, 0o400)  # immutable, and its owner's alone
            # rename is atomic: a reader sees the whole blob or none of it
            os.replace(temporary, final)
        return info

    def _temporary(self) -> tuple[int, Path]:
        self._incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._incoming)
        return fd, Path(name)

    def put(self, stream: BinaryIO) -> BlobInfo:
        fd, temporary = self._temporary()
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            return self._publish(temporary, BlobInfo(sha256=digest.hexdigest(), size=size))
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"could not store blob: {exc}") from exc

    def put_path(self, path: Path) -> BlobInfo:
        info = hash_path(path)
        if self._path(info.sha256).exists():
            return info
        fd, temporary = self._temporary()
        os.close(fd)
        try:
            shutil.copyfile(path, temporary)
            return self._publish(temporary, info)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"could not store blob: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        try:
            self._path(sha256).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete blob: {exc}") from exc

    def iter_chunks(self, sha256: str, *, offset: int = 0, limit_bytes: int | None = None) -> Iterator[bytes]:
        try:
            handle = self._path(sha256).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(sha256) from exc
        with handle:
            size = os.fstat(handle.fileno()).st_size
            # past the end there is nothing to read; and past the largest file the filesystem can
            # hold (ext4: 16 TiB), seek() itself fails (EINVAL)
            if offset >= size:
                return
            handle.seek(offset)
            # (at most what is left: read(n) allocates n bytes first, a megabyte for a small input)
            remaining = size - offset if limit_bytes is None else min(limit_bytes, size - offset)
            while remaining > 0:
                chunk = handle.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def copy_to_path(self, sha256: str, destination: Path) -> None:
        source = self._path(sha256)
        if not source.exists():
            raise BlobNotFound(sha256)
        # a copy, never a link: a tool writing to its input must not alter the stored blob
        shutil.copyfile(source, destination)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise StorageError(f"blob root {self.root} is not writable: {exc}") from exc
