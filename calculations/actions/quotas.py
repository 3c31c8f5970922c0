"""Per-user limits: the deployment's (EMGAPI_QUOTA__*), unless the user has their own (UserQuota)."""

from __future__ import annotations

from django.db import transaction

from calculations.actions.rows import first_row
from calculations.actions.users import do_ensure_user
from calculations.models import UserQuota
from emgapiv2.config import get_settings


def _own(owner_id: int) -> UserQuota | None:
    return first_row(UserQuota.objects.filter(user_id=owner_id))


def active_limit(owner_id: int) -> int:
    """Calculations the user may have queued or running."""
    own = _own(owner_id)
    if own is not None and own.max_active_calculations is not None:
        return own.max_active_calculations
    return get_settings().quota.max_active_calculations


def storage_limit(owner_id: int) -> int:
    """Distinct bytes the user may hold."""
    own = _own(owner_id)
    if own is not None and own.storage_bytes is not None:
        return own.storage_bytes
    return get_settings().quota.storage_bytes


@transaction.atomic
def do_set_user_quota(
    username: str, *, max_active_calculations: int | None = None, storage_bytes: int | None = None
) -> UserQuota:
    """Give a user (created if needed) limits of their own; None keeps the deployment's."""
    user = do_ensure_user(username)
    quota, _ = UserQuota.objects.update_or_create(
        user=user, defaults={"max_active_calculations": max_active_calculations, "storage_bytes": storage_bytes}
    )
    return quota
