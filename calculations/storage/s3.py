"""Blobs as objects in one S3 bucket under `<prefix><sha256>` (production), and presigned transfers:
multipart uploads staged under `<prefix>uploads/<id>` whose parts clients PUT themselves, and
download URLs. Presigned URLs are signed for the endpoint clients reach (`public_endpoint_url`)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
# a copy stays inside S3: one CopyObject up to its 5 GiB limit, multipart (UploadPartCopy) above it
_COPY = TransferConfig(multipart_threshold=5 * 1024**3, multipart_chunksize=1024**3)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# S3's answers to a CompleteMultipartUpload naming parts it does not have: the client's mistake
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"}


class UploadNotFound(StorageError):
    """The multipart upload is no longer in S3 (completed, aborted, or expired by a bucket rule)."""


class RejectedParts(Exception):
    """S3 refused the parts named to complete an upload: the client's mistake, not the storage's."""


@dataclass(frozen=True)
class StagedPart:
    number: int
    size: int
    etag: str  # opaque: compared, never parsed (its form differs between S3 servers)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStorage:
    kind = "s3"

    def __init__(
        self,
        client: Any,
        bucket: str,
        key_prefix: str,
        spool_dir: Path | None = None,
        *,
        presigner: Any | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.spool_dir = spool_dir  # None: the system's temporary directory
        # signs URLs for the endpoint clients reach; it never sends a request itself
        self.presigner = presigner if presigner is not None else client

    @classmethod
    def from_settings(cls, s3: S3Settings, *, spool_dir: Path | None = None) -> S3BlobStorage:
        client = cls._client(s3, s3.endpoint_url)
        presigner = None
        if s3.public_endpoint_url and s3.public_endpoint_url != s3.endpoint_url:
            presigner = cls._client(s3, s3.public_endpoint_url)
        return cls(client, s3.bucket, s3.key_prefix, spool_dir, presigner=presigner)

    @staticmethod
    def _client(s3: S3Settings, endpoint_url: str | None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
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

    def iter_chunks(self, sha256: str, *, offset: int = 0, limit_bytes: int | None = None) -> Iterator[bytes]:
        if limit_bytes is not None and limit_bytes <= 0:
            return
        yield from self._iter_key(self._key(sha256), offset=offset, limit_bytes=limit_bytes)

    def _iter_key(self, key: str, *, offset: int = 0, limit_bytes: int | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or limit_bytes is not None:  # a Range: only the bytes asked for leave S3
            kwargs["Range"] = f"bytes={offset}-{'' if limit_bytes is None else offset + limit_bytes - 1}"
        try:
            body = self.client.get_object(**kwargs)["Body"]
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise BlobNotFound(key.removeprefix(self.key_prefix)) from exc
            if _code(exc) == "InvalidRange":  # the offset is at or past the end
                return
            raise StorageError(f"could not read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        except BotoCoreError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

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

    # --- presigned transfers (S3 only: the filesystem storage has no URLs to give out)

    def staging_key(self, name: str) -> str:
        """Where an upload's bytes are assembled before they are verified and get their blob key."""
        return f"{self.key_prefix}uploads/{name}"

    def start_multipart(self, key: str) -> str:
        """Start a multipart upload at `key`; return S3's upload id."""
        try:
            return str(self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not start a multipart upload: {exc}") from exc

    def presign_part(self, key: str, upload_id: str, part_number: int, size: int, expires_seconds: int) -> str:
        """A URL to PUT one part. Its Content-Length is signed: S3 refuses a part of any other size, so
        a client can stage no more than it declared."""
        return str(
            self.presigner.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": part_number,
                    "ContentLength": size,
                },
                ExpiresIn=expires_seconds,
            )
        )

    def list_parts(self, key: str, upload_id: str) -> list[StagedPart]:
        """The parts S3 has received so far, by number."""
        parts: list[StagedPart] = []
        marker = 0
        try:
            while True:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=1000
                )
                parts += [
                    StagedPart(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"])) for p in page.get("Parts", [])
                ]
                if not page.get("IsTruncated") or not page.get("Parts"):
                    break
                marker = int(page["NextPartNumberMarker"])
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":
                raise UploadNotFound(f"multipart upload {upload_id} is gone from S3") from exc
            raise StorageError(f"could not list the parts of an upload: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not list the parts of an upload: {exc}") from exc
        return sorted(parts, key=lambda part: part.number)

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Assemble the object at `key` from these (part number, ETag) pairs."""
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]},
            )
        except ClientError as exc:
            if _code(exc) in _BAD_PARTS:
                raise RejectedParts(str(exc.response.get("Error", {}).get("Message") or _code(exc))) from exc
            if _code(exc) == "NoSuchUpload":
                raise UploadNotFound(f"multipart upload {upload_id} is gone from S3") from exc
            raise StorageError(f"could not complete an upload: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not complete an upload: {exc}") from exc

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard an unfinished upload's parts (no error if it is gone already)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in {"NoSuchUpload", *_NOT_FOUND}:
                raise StorageError(f"could not abort an upload: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not abort an upload: {exc}") from exc

    def iter_key(self, key: str) -> Iterator[bytes]:
        """Stream a staged object's bytes (to verify them)."""
        return self._iter_key(key)

    def delete_key(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete {key}: {exc}") from exc

    def promote(self, key: str, info: BlobInfo) -> None:
        """Give a verified staged object its blob key: a copy inside S3 (none if the blob exists)."""
        if self.exists(info.sha256):
            return
        try:
            self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, self._key(info.sha256), Config=_COPY)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store blob {info.sha256}: {exc}") from exc

    def presign_download(self, sha256: str, content_disposition: str, expires_seconds: int) -> str:
        """A URL to GET a blob, answered with this Content-Disposition (the file's name)."""
        return str(
            self.presigner.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(sha256),
                    "ResponseContentDisposition": content_disposition,
                    "ResponseContentType": "application/octet-stream",
                },
                ExpiresIn=expires_seconds,
            )
        )

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
