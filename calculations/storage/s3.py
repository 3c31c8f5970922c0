"""Blobs as objects in one S3 bucket under `<prefix><sha256>` (production)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from calculations.storage.base import CHUNK_BYTES, BlobInfo, BlobNotFound, StorageError, hash_path

if TYPE_CHECKING:
    from emgapiv2.config import S3Settings

# multipart in 8 MiB parts keeps memory constant whatever the blob size
_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)


class S3BlobStorage:
    kind = "s3"

    def __init__(self, client: Any, bucket: str, key_prefix: str, spool_dir: Path | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.spool_dir = spool_dir  # None: the system's temporary directory

    @classmethod
    def from_settings(cls, s3: S3Settings, *, spool_dir: Path | None = None) -> S3BlobStorage:
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5},
                # S3-compatible servers differ on flexible checksums, and a ranged read (format
                # sniffing) cannot match a whole-object checksum: validate only when S3 requires it
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        return cls(client, s3.bucket, s3.key_prefix, spool_dir)

    def _key(self, sha256: str) -> str:
        return f"{self.key_prefix}{sha256}"

    def put(self, stream: BinaryIO) -> BlobInfo:
        # The key is the digest, so the bytes are read twice: spooled to a local temporary file
        # while hashing, then uploaded from it. Memory stays constant either way.
        with tempfile.NamedTemporaryFile(dir=self.spool_dir) as spool:
            digest = hashlib.sha256()
            size = 0
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            spool.flush()
            info = BlobInfo(sha256=digest.hexdigest(), size=size)
            self._upload(Path(spool.name), info)
        return info

    def put_path(self, path: Path) -> BlobInfo:
        info = hash_path(path)
        self._upload(path, info)
        return info

    def _upload(self, path: Path, info: BlobInfo) -> None:
        if self.exists(info.sha256):
            return
        try:
            self.client.upload_file(str(path), self.bucket, self._key(info.sha256), Config=_TRANSFER)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not upload blob {info.sha256}: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StorageError(f"could not reach S3: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not reach S3: {exc}") from exc

    def delete(self, sha256: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete blob: {exc}") from exc

    def iter_chunks(self, sha256: str, *, limit_bytes: int | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(sha256)}
        if limit_bytes is not None:
            kwargs["Range"] = f"bytes=0-{max(limit_bytes - 1, 0)}"
        try:
            body = self.client.get_object(**kwargs)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise BlobNotFound(sha256) from exc
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return
            raise StorageError(f"could not read blob {sha256}: {exc}") from exc
        yield from body.iter_chunks(CHUNK_BYTES)

    def copy_to_path(self, sha256: str, destination: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(sha256), str(destination), Config=_TRANSFER)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise BlobNotFound(sha256) from exc
            raise StorageError(f"could not download blob {sha256}: {exc}") from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket!r} unreachable: {exc}") from exc

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
