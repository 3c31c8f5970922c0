"""The accounts runs belong to: a user named by a command (a token, a quota), and the operator
account that owns what operators launch from the Prefect dashboard (EMGAPI_WORKFLOW__OPERATOR_USERNAME)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from emgapiv2.config import get_settings


def do_ensure_user(username: str) -> Any:
    """The user of that name, created (with no password: it signs in with tokens only) if there is none."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    return user


def do_ensure_operator() -> Any:
    return do_ensure_user(get_settings().workflow.operator_username)


def lock_user(user_id: int) -> None:
    """The user's row, locked: one claimant of their quotas at a time (a submission, a step's start, an
    upload). Every action that locks more takes the user first, then the rest."""
    get_user_model().objects.select_for_update(no_key=True).filter(id=user_id).first()
