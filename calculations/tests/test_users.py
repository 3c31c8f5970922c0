"""The Django admin's superuser that `./taskw start` and `./taskw up` make (do_ensure_admin, the
ensure_admin command): made once, its password in data_dir/admin-password (0600), never reset."""

from __future__ import annotations

import stat
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from calculations.actions.users import do_ensure_admin
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    return tmp_path


def test_the_admin_is_made_once_with_its_password_in_a_file_only_its_owner_reads(data_dir: Path) -> None:
    first = do_ensure_admin()
    password_file = data_dir / "admin-password"
    assert first.created and first.password_in_file and first.password_file == password_file
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password) and len(password) >= 20

    again = do_ensure_admin()  # the next start
    assert not again.created and again.password_in_file
    assert password_file.read_text().strip() == password
    assert get_user_model().objects.get(username="admin").password == admin.password  # not reset


def test_a_password_changed_since_is_kept_and_the_file_is_not_trusted(data_dir: Path) -> None:
    do_ensure_admin()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed in the admin")
    admin.save()
    (data_dir / "admin-password").chmod(0o644)
    again = do_ensure_admin()
    assert not again.created and not again.password_in_file
    assert get_user_model().objects.get(username="admin").check_password("changed in the admin")
    assert stat.S_IMODE((data_dir / "admin-password").stat().st_mode) == 0o600


def test_a_password_file_left_by_an_earlier_start_is_the_new_accounts_password(data_dir: Path) -> None:
    (data_dir / "admin-password").write_text("kept-from-before\n")
    assert do_ensure_admin().created
    assert get_user_model().objects.get(username="admin").check_password("kept-from-before")


def test_the_command_says_where_to_sign_in_and_where_the_password_is(data_dir: Path) -> None:
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    url = get_settings().public_url.rstrip("/")
    assert out.getvalue().strip() == f"{url}/admin/ (user admin, password in {data_dir / 'admin-password'})"
    get_user_model().objects.filter(username="admin").update(password="!")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "its password is not the one in" in out.getvalue() and "changepassword admin" in out.getvalue()
