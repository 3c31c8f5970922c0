"""Both storage implementations, the S3 one against a real S3 server (rclone serve s3)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from calculations.storage import BlobNotFound, BlobStorage, StorageError
from calculations.storage.base import read_ahead, read_head
from calculations.storage.filesystem import FilesystemBlobStorage
from calculations.storage.s3 import S3BlobStorage
from conftest import S3_ACCESS_KEY as ACCESS_KEY
from conftest import S3_SECRET_KEY as SECRET_KEY
from emgapiv2.config import S3Settings


def _s3_storage(endpoint: str, bucket: str) -> S3BlobStorage:
    storage = S3BlobStorage.from_settings(
        S3Settings(endpoint_url=endpoint, bucket=bucket, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    )
    storage.ensure_bucket()
    return storage


@pytest.fixture(params=["filesystem", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStorage:
    if request.param == "filesystem":
        return FilesystemBlobStorage(tmp_path / "blobs")
    return _s3_storage(request.getfixturevalue("s3_endpoint"), f"b{abs(hash(tmp_path)) % 10**9}")


def test_put_is_content_addressed_and_read_back(storage: BlobStorage, tmp_path: Path) -> None:
    data = b">seq\nACGT\n" * 1000
    info = storage.put(io.BytesIO(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert storage.exists(info.sha256)
    assert b"".join(storage.iter_chunks(info.sha256)) == data
    assert read_head(storage, info.sha256, 5) == b">seq\n"
    destination = tmp_path / "copy"
    storage.copy_to_path(info.sha256, destination)
    assert destination.read_bytes() == data
    storage.check()


def test_same_bytes_are_stored_once(storage: BlobStorage, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"twice")
    assert storage.put_path(path) == storage.put(io.BytesIO(b"twice"))


def test_large_blobs_stream_in_chunks(storage: BlobStorage, tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as handle:  # 24 MiB: multipart on S3, many chunks on read
        for index in range(24):
            handle.write(bytes([index]) * 1024 * 1024)
    info = storage.put_path(path)
    chunks = list(storage.iter_chunks(info.sha256))
    assert len(chunks) > 1 and max(map(len, chunks)) <= 1024 * 1024
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == info.sha256


def test_missing_blob_is_reported(storage: BlobStorage, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        list(storage.iter_chunks("0" * 64))
    with pytest.raises(BlobNotFound):
        storage.copy_to_path("0" * 64, tmp_path / "x")


def test_filesystem_blobs_are_read_only(tmp_path: Path) -> None:
    storage = FilesystemBlobStorage(tmp_path)
    info = storage.put(io.BytesIO(b"immutable"))
    assert (tmp_path / info.sha256[:2] / info.sha256[2:4] / info.sha256).stat().st_mode & 0o222 == 0


def test_a_ranged_read_returns_only_the_bytes_asked_for(storage: BlobStorage) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: more than one chunk
    info = storage.put(io.BytesIO(data))
    assert b"".join(storage.iter_chunks(info.sha256, offset=1000, limit_bytes=5)) == data[1000:1005]
    assert b"".join(storage.iter_chunks(info.sha256, offset=len(data) - 3)) == data[-3:]
    assert b"".join(storage.iter_chunks(info.sha256, offset=1024 * 1024 + 7)) == data[1024 * 1024 + 7 :]
    assert b"".join(storage.iter_chunks(info.sha256, offset=len(data))) == b""
    assert b"".join(storage.iter_chunks(info.sha256, offset=len(data) + 10, limit_bytes=4)) == b""


def test_read_ahead_yields_every_chunk_in_order_and_raises_a_read_error() -> None:
    assert list(read_ahead(iter([b"a", b"b", b"c"] * 100), depth=2)) == [b"a", b"b", b"c"] * 100

    def failing() -> Iterator[bytes]:
        yield b"first"
        raise StorageError("connection reset")

    reader = read_ahead(failing())
    assert next(reader) == b"first"
    with pytest.raises(StorageError, match="connection reset"):
        next(reader)
