"""Notifications (webhooks): what a run asked to be told, as an outbox of deliveries, and each user's
signing secret. A guarded transition inserts the row in its own transaction; the worker's notifier
(`workflows/worker/notifier.py`) sends it, and records each attempt here."""

import uuid

from django.conf import settings
from django.db import models


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: `error` says why


class Notification(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # the delivery id
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16)  # "calculation" or "workflow-run"
    # no foreign key: a run is one of two kinds; its events are ordered by `sequence` (its event row's id)
    run_id = models.UUIDField()
    sequence = models.BigIntegerField()
    state = models.CharField(max_length=16)
    url = models.CharField(max_length=2048)
    created_at = models.DateTimeField()  # when the run reached `state`
    # the JSON body, composed at the first attempt (after the transition's transaction committed, so it
    # holds what was recorded with it, e.g. a verdict) and kept, so every retry sends the same bytes
    payload = models.BinaryField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)  # the last attempt's failure; once FAILED, why it was given up
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # the worker sending it, until when: another worker takes it only after the lease ran out
    claimed_by = models.CharField(max_length=200, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-sequence"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            # the notifier's due rows, and the earlier pending row of the same run that holds one back
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["run_id", "sequence"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.run_id} {self.state} [{self.status}]"


class WebhookSecret(models.Model):
    """The key a user's notifications are signed with (HMAC-SHA256): made on first need, readable and
    rotatable by its user only (GET/POST /api/v2/users/me/webhook-secret)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="webhook_secret"
    )
    secret = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"webhook secret of user {self.user_id}"  # never the secret itself
