"""API bearer tokens, stored as sha256 hashes only."""

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    token_sha256 = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters of the token, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # "read" lets a token only read (GET); "write" lets it also upload, submit and cancel
    can_write = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Unset: never expires.")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class UserQuota(models.Model):
    """A user's own limits, where they differ from the deployment's (EMGAPI_QUOTA__*): staff set
    them in the admin, or with `create_token --max-active-calculations N --storage-bytes N`."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="quota"
    )
    max_active_calculations = models.PositiveIntegerField(null=True, blank=True, help_text="Unset: the deployment's.")
    storage_bytes = models.BigIntegerField(null=True, blank=True, help_text="Unset: the deployment's.")

    def __str__(self) -> str:
        return f"quota of {self.user}"
