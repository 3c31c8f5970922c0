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
