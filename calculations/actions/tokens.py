"""API tokens: created once in plain text, kept as sha256, their use recorded now and then."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from calculations.actions.users import do_ensure_user
from calculations.models import ApiToken

# `last_used_at` tells an operator which tokens are alive; to the minute is enough, and writing it
# on every request would make every GET a write
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def do_create_api_token(username: str, *, can_write: bool = True, expires_in: timedelta | None = None) -> str:
    """Create a token for `username` (creating the user if needed); return it in plain text once."""
    user = do_ensure_user(username)
    token = f"emg_{secrets.token_urlsafe(32)}"
    ApiToken.objects.create(
        user=user,
        token_sha256=hash_token(token),
        prefix=token[:12],
        can_write=can_write,
        expires_at=timezone.now() + expires_in if expires_in else None,
    )
    return token


def do_record_token_use(token: ApiToken) -> None:
    """Stamp `last_used_at`, at most once per LAST_USED_RESOLUTION (one conditional UPDATE)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(id=token.id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    token.last_used_at = now
