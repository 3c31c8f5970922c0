"""What `./taskw start` leaves (scripts/services.sh start): the API, and an admin account one can
sign in with, its password in the data directory, which the start message names. Run on its own
ports and data directory (SQLite), never the platform's on 8000 and 4200."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from emgapiv2.config import BASE_DIR

# services of its own, none of the integration session's: run beside that session
pytestmark = pytest.mark.own_services


@pytest.fixture
def start_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a start in a data directory of its own: none of the test session's settings."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EMGAPI_", "PREFECT_", "DJANGO_", "WEB_", "PG"))
    }
    env = inherited | {"EMGAPI_DATA_DIR": str(tmp_path / "var"), "WEB_PORT": str(free_port()),
                       "PREFECT_PORT": str(free_port()), "WEB_WORKERS": "1"}  # fmt: skip
    yield env
    subprocess.run(["scripts/services.sh", "stop", "web"], cwd=BASE_DIR, env=env, capture_output=True, timeout=60)


def _start_web(env: dict[str, str]) -> str:
    done = subprocess.run(
        ["scripts/services.sh", "start", "web"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_start_leaves_an_admin_one_can_sign_in_with(start_env: dict[str, str], tmp_path: Path) -> None:
    out = _start_web(start_env)
    password_file = tmp_path / "var" / "admin-password"
    url = f"http://127.0.0.1:{start_env['WEB_PORT']}"
    assert f"Django admin: {url}/admin/ (user admin, password in {password_file})" in out.splitlines()
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()

    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/admin/login/")
        signed_in = browser.post(
            "/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        )
        assert signed_in.status_code == 302 and signed_in.headers["location"] == "/admin/", signed_in.text[:500]
        assert "Site administration" in browser.get("/admin/").text

    # a second start (the API already serving) makes nothing new and says the same
    assert f"Django admin: {url}/admin/ (user admin, password in {password_file})" in _start_web(start_env)
    assert password_file.read_text().strip() == password
