"""Objects outside the platform's storage that a TES task may read: s3:// objects of the buckets
the deployment allows, with the platform's own S3 credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calculations.storage import StorageError, get_storage


def s3_client() -> Any:
    from calculations.storage.s3 import S3BlobStorage

    storage = get_storage()
    if not isinstance(storage, S3BlobStorage):
        raise StorageError("s3:// inputs need S3 storage (EMGAPI_STORAGE__BACKEND=s3)")
    return storage.client


def download_object(bucket: str, key: str, destination: Path) -> None:
    """Stream one object to a local file."""
    try:
        s3_client().download_file(bucket, key, str(destination))
    except Exception as exc:  # botocore's errors: gone, forbidden, unreachable
        raise StorageError(f"could not read s3://{bucket}/{key}: {exc}") from exc
