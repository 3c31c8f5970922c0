"""Content-addressed blob storage: one interface, a filesystem and an S3 implementation."""

from functools import lru_cache

from calculations.storage.base import BlobInfo, BlobNotFound, BlobStorage, StorageError
from emgapiv2.config import get_settings

__all__ = ["BlobInfo", "BlobNotFound", "BlobStorage", "StorageError", "get_storage"]


@lru_cache
def get_storage() -> BlobStorage:
    """The storage configured by the Settings object (one instance per process)."""
    settings = get_settings()
    if settings.storage.backend == "s3":
        # boto3, a heavy import (~0.3 s and its memory), only where the storage is S3
        from calculations.storage.s3 import S3BlobStorage

        return S3BlobStorage.from_settings(settings.s3, spool_dir=settings.spool_dir)
    from calculations.storage.filesystem import FilesystemBlobStorage  # (beside its S3 twin, chosen here)

    return FilesystemBlobStorage(settings.blob_root)
