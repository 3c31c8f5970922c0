"""The accounts runs belong to: a user named by a command (a token, a quota), the operator
account that owns what operators launch from the Prefect dashboard (EMGAPI_WORKFLOW__OPERATOR_USERNAME),
and the Django admin's first superuser, which `./taskw start` and `./taskw up` make once."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from calculations.actions.rows import first_row
from emgapiv2.config import get_settings

ADMIN_PASSWORD_FILE = "admin-password"  # in the data directory


def do_ensure_user(username: str) -> Any:
    """The user of that name, created (with no password: it signs in with tokens only) if there is none."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    return user


def do_ensure_operator() -> Any:
    return do_ensure_user(get_settings().workflow.operator_username)


def lock_user(user_id: int) -> None:
    """The user's row, locked: one claimant of their quotas at a time (a submission, a step's start, an
    upload). Every action that locks more takes the user first, then the rest."""
    first_row(
        get_user_model().objects.select_for_update(no_key=True).filter(id=user_id).values_list("id")
    )  # (not the whole row)


@dataclass(frozen=True)
class AdminAccount:
    username: str
    password_file: Path
    created: bool  # by this call
    password_in_file: bool  # the file holds the password it signs in with (not changed since)


def _write_secret(path: Path, value: str) -> None:
    """`value` into `path`, readable by its owner only (0600 from its creation), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    os.replace(temporary, path)


def do_ensure_admin(username: str = "admin", *, email: str = "admin@localhost") -> AdminAccount:
    """The superuser `username`, made once: its password generated into data_dir/admin-password
    (0600), or taken from that file if one is there. An account that exists is left as it is: a
    start never resets a password someone may have changed."""
    password_file = get_settings().data_dir / ADMIN_PASSWORD_FILE
    users = get_user_model().objects
    created = False
    if not users.filter(username=username).exists():
        kept = password_file.read_text().strip() if password_file.is_file() else ""
        password = kept or secrets.token_urlsafe(18)
        if not kept:
            _write_secret(password_file, password)
        try:
            with transaction.atomic():
                users.create_superuser(username=username, email=email, password=password)
            created = True
        except IntegrityError:  # made meanwhile by another start: theirs stands
            pass
    if password_file.is_file():
        password_file.chmod(0o600)
    user = users.get(username=username)
    in_file = password_file.is_file() and user.check_password(password_file.read_text().strip())
    return AdminAccount(username, password_file, created, in_file)
