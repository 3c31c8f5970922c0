"""A POST made with an Idempotency-Key, and the response it got: a retried request is answered
with that response instead of being executed again."""

from django.conf import settings
from django.db import models


class IdempotentRequest(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of method, path and body: the same key with another request is refused
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # null: still in progress
    content_type = models.CharField(max_length=128, blank=True)
    body = models.BinaryField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="one_request_per_idempotency_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.owner_id})"
