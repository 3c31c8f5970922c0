"""Nothing is reachable without credentials, and secrets are their owner's alone: generated on
first start, in 0600 files under a 0700 directory; the platform's PostgreSQL wants a password."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from emgapiv2.config import BASE_DIR, get_settings
from emgapiv2.keys import read_or_create_secret

SCRIPTS = BASE_DIR / "scripts"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_generated_secret_is_kept_private_and_stable(tmp_path: Path) -> None:
    first = read_or_create_secret(tmp_path, "django-secret-key")
    assert len(first) == 32 and first.isalnum()
    assert read_or_create_secret(tmp_path, "django-secret-key") == first  # the same on every start
    assert _mode(tmp_path / "secrets") == 0o700 and _mode(tmp_path / "secrets" / "django-secret-key") == 0o600
    assert read_or_create_secret(tmp_path, "other") != first


def test_the_platforms_files_are_its_owners_alone(uploaded: Callable[[str, bytes], str]) -> None:
    uploaded("genome.fna", b">c\nACGT\n")
    data_dir = get_settings().data_dir
    assert _mode(data_dir) == 0o700
    # everything the platform wrote (blobs, the SQLite database in the smoke run, secrets) is private
    written = [path for path in data_dir.rglob("*") if path.is_file()]
    assert written and all(_mode(path) & 0o077 == 0 for path in written), [
        (str(path), oct(_mode(path))) for path in written if _mode(path) & 0o077
    ]


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=False, timeout=120)


def test_the_shell_side_makes_the_same_kind_of_secret(tmp_path: Path) -> None:
    env = {**os.environ, "EMGAPI_DATA_DIR": str(tmp_path)}
    made = _bash(f". {SCRIPTS}/secrets.sh; secret prefect-api-password; echo; secret prefect-api-password", env)
    first, again = made.stdout.split()
    assert first == again and len(first) == 48 and int(first, 16)  # 192 random bits, hex
    assert _mode(tmp_path / "secrets" / "prefect-api-password") == 0o600


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="starts PostgreSQL as postgres")
def test_the_platforms_postgresql_refuses_a_login_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster, pwfile = tmp_path / "private" / "pg", tmp_path / "pw"
    cluster.parent.mkdir(mode=0o700)  # as the 0700 data directory: postgres may only traverse it
    pwfile.write_text("s3cret-Pw\n")
    pwfile.chmod(0o600)
    env = {**os.environ}
    started = _bash(f". {SCRIPTS}/pg.sh; pg_start {cluster} {port} {pwfile}", env)
    assert started.returncode == 0, started.stderr
    try:
        psql = "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql"

        def login(as_user: str, password: str | None, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
            secret = f"PGPASSWORD={password} " if password is not None else "PGPASSWORD= "
            command = f"{secret}{psql} -w -h {host} -p {port} -U postgres -tAc 'SELECT 1'"
            return _bash(command if as_user == "root" else f'runuser -u {as_user} -- bash -c "{command}"', env)

        assert login("nobody", None).returncode != 0  # any local account, no password: refused
        assert login("root", "wrong").returncode != 0
        assert "password authentication failed" in login("root", "wrong").stderr
        assert login("postgres", None, host=str(cluster)).returncode != 0  # even on its own socket
        assert login("root", "s3cret-Pw").stdout.strip() == "1"
        hba = (cluster / "data" / "pg_hba.conf").read_text()
        assert not [line for line in hba.splitlines() if line.strip() and not line.startswith("#") and "trust" in line]
    finally:
        _bash(f". {SCRIPTS}/pg.sh; pg_stop {cluster}", env)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="starts PostgreSQL as postgres")
def test_a_cluster_made_with_trust_is_converted_on_its_next_start(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster, pwfile = tmp_path / "pg", tmp_path / "pw"
    pwfile.write_text("n3w-Pw\n")
    env = {**os.environ}
    assert _bash(f". {SCRIPTS}/pg.sh; pg_start {cluster} {port}; pg_stop {cluster}", env).returncode == 0
    assert _bash(f". {SCRIPTS}/pg.sh; pg_start {cluster} {port} {pwfile}", env).returncode == 0
    try:
        psql = f"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql -w -h 127.0.0.1 -p {port} -U postgres"
        assert _bash(f"PGPASSWORD= {psql} -tAc 'SELECT 1'", env).returncode != 0
        assert _bash(f"PGPASSWORD=n3w-Pw {psql} -tAc 'SELECT 1'", env).stdout.strip() == "1"
    finally:
        _bash(f". {SCRIPTS}/pg.sh; pg_stop {cluster}", env)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setfacl"), reason="needs root and setfacl")
def test_restarting_keeps_postgres_able_to_reach_its_cluster_in_the_private_data_dir() -> None:
    base = Path(tempfile.mkdtemp())
    base.chmod(0o755)  # as a checkout's directory: only the data directory inside is private
    data_dir = base / "var"
    data_dir.mkdir(mode=0o700)
    subprocess.run(["setfacl", "-m", "u:postgres:x", str(data_dir)], check=True)
    env = {**os.environ, "EMGAPI_DATA_DIR": str(data_dir), "EMGAPI_ROOT": str(BASE_DIR)}
    assert _bash(f". {SCRIPTS}/env.sh", env).returncode == 0  # every script sources it, on every start and stop
    assert subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(data_dir)]).returncode == 0
    assert _mode(data_dir) & 0o067 == 0 and _mode(data_dir) & 0o010  # no r/w for others; the x is the mask
    shutil.rmtree(base)
