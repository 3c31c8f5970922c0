"""A user's view of an immutable, content-addressed blob."""

import uuid

from django.conf import settings
from django.db import models


class File(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    # Set for outputs only: the calculation that produced this file, and in which output role.
    produced_by = models.ForeignKey(
        "calculations.Calculation", null=True, blank=True, on_delete=models.CASCADE, related_name="output_files"
    )
    output_role = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "id"]
        # a user's held bytes and a deduplicating upload look up their files by sha256
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["owner", "sha256"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"


class HeldBytes(models.Model):
    """The distinct bytes a user holds (each content once, however many of their files point at it):
    a running total kept by the file actions (`calculations/actions/files.py`), so that the storage
    quota checked for every output and upload costs one row, not a sum over all of the user's files."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="held_bytes"
    )
    bytes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.bytes} bytes"


class OrphanBlob(models.Model):
    """A blob that lost its last File row: the sweep deletes it once it has stayed an orphan for
    the grace period. Storing the same bytes again (an upload, an output) removes this row first."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    noticed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.sha256
