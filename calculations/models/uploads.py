"""A presigned multipart upload to S3 (design brief §6): the client PUTs the parts straight to S3;
completing it verifies the bytes and gives the user a File row for the content-addressed blob."""

import uuid

from django.conf import settings
from django.db import models


class UploadState(models.TextChoices):
    OPEN = "OPEN"  # parts may be PUT
    COMPLETING = "COMPLETING"  # assembled, being verified and copied to its blob (one request at a time)
    COMPLETE = "COMPLETE"  # `file` is the result
    FAILED = "FAILED"  # the bytes did not match the declared size or sha256 (`error` says how)
    ABORTED = "ABORTED"  # the client gave up
    EXPIRED = "EXPIRED"  # left unfinished past `expires_at`; the sweeper aborted it


# an upload in these states may still hold a staging object or multipart upload in S3
UNFINISHED_UPLOAD_STATES = frozenset({UploadState.OPEN, UploadState.COMPLETING})


class Upload(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()  # declared by the client, verified on completion
    sha256 = models.CharField(max_length=64, blank=True)  # declared (optional), verified on completion
    part_size = models.BigIntegerField()
    key = models.CharField(max_length=1024)  # the staging object's key in the bucket
    s3_upload_id = models.CharField(max_length=1024)
    state = models.CharField(max_length=16, choices=UploadState.choices, default=UploadState.OPEN, db_index=True)
    file = models.ForeignKey("calculations.File", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"upload {self.name} [{self.state}]"
