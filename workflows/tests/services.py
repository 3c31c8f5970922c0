"""Integration fixtures: a real Prefect server (on the test PostgreSQL), a real calculation worker, and
checks for the container engine and the Slurm cluster.

A plugin, not a conftest: the root conftest.py registers it (`pytest_plugins`), so every app's tests
(workflows/tests, client/tests, …) share the session's one Prefect server and one worker. A fixture
defined in two conftest files would be two fixtures, and would start two servers on one port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from emgapiv2.config import BASE_DIR, get_settings


def _postgres_url(database: str, *, driver: str = "postgresql") -> str:
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"{driver}://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{database}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _new_prefect_server(home: Path) -> PrefectServer:
    """A Prefect server on a database of its own on the test PostgreSQL, not started yet."""
    import psycopg

    database = f"prefect_test_{os.getpid()}"
    with psycopg.connect(_postgres_url("postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}"')
        connection.execute(f'CREATE DATABASE "{database}"')
    api_url = os.environ["PREFECT_API_URL"]
    port = api_url.rsplit(":", 1)[1].split("/")[0]
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": port,
        "PREFECT_SERVER_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": _postgres_url(database, driver="postgresql+asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",  # the browser test opens the dashboard
        "DO_NOT_TRACK": "1",
    }
    return PrefectServer(api_url, env, home / "server.log")


# EMGAPI_TEST_PREFECT_EARLY=1 (scripts/test.sh's integration session): the server starts booting when
# the session starts, while the tests are collected, and the fixture then waits for it to answer
_early_server: list[PrefectServer] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("EMGAPI_TEST_PREFECT_EARLY") != "1":
        return
    if django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return
    server = _new_prefect_server(session.config._tmp_path_factory.mktemp("prefect"))  # type: ignore[attr-defined]
    server.spawn()
    _early_server.append(server)


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _early_server:  # started early, and no test asked for it
        _early_server.pop().stop()


@pytest.fixture(scope="session")
def prefect_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    if django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("integration tests run on PostgreSQL (task test starts one)")
    if _early_server:
        server = _early_server.pop()
        server.wait_ready(0)
    else:
        server = _new_prefect_server(tmp_path_factory.mktemp("prefect"))
        server.start()
    try:
        from workflows.orchestration.deployments import deploy

        deploy(["run-calculation", "pipeline"])
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(prefect_server_process: PrefectServer) -> str:
    return prefect_server_process.api_url


class ServiceProcess:
    """A real service as a subprocess, in its own session, logging to a file; it can be stopped,
    killed and started again."""

    argv: list[str]

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.wait_ready(self.spawn())

    def spawn(self) -> int:
        """Started, not waited for: the offset in its log where this start's lines begin."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return offset

    def wait_ready(self, log_offset: int) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer would: no clean-up runs."""
        assert self.process is not None
        os.killpg(self.process.pid, 9)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class PrefectServer(ServiceProcess):
    """A real Prefect server on the test PostgreSQL."""

    argv = [sys.executable, "-m", "prefect", "server", "start"]

    def __init__(self, api_url: str, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self.api_url = api_url

    def wait_ready(self, log_offset: int) -> None:
        assert self.process is not None
        _wait_http(f"{self.api_url}/health", self.process, self.log, 120)


class WorkerProcess(ServiceProcess):
    """The real calculation worker on the test database, its /metrics on `metrics_port`."""

    argv = [sys.executable, "-m", "workflows.worker"]

    @property
    def metrics_port(self) -> int:
        return int(self.env["EMGAPI_METRICS__WORKER_PORT"])

    def wait_ready(self, log_offset: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        while "serving work pool" not in self.log.read_text()[log_offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def calculation_worker(
    prefect_server: str, django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[WorkerProcess]:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "emgapiv2.settings",
        # the worker must use the test database pytest-django created
        "EMGAPI_DB__URL": _postgres_url(connection.settings_dict["NAME"]),
        "EMGAPI_DATA_DIR": str(get_settings().data_dir),
        # the links it writes (artifacts, a step's log line) open the live server's admin in a browser
        "EMGAPI_PUBLIC_URL": live_server.url,
        "EMGAPI_PREFECT__DISPATCH": "background",  # as in production: it dispatches the retries it queues
        "EMGAPI_RECONCILER__INTERVAL_SECONDS": "2",  # its reconciler service, at test speed
        "EMGAPI_METRICS__WORKER_PORT": str(_free_port()),  # its /metrics (the Prometheus test scrapes it)
    }
    worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    yield worker
    worker.stop()
    print(f"\nworker log tail:\n{worker.log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def container_engine() -> str:
    """The Docker-API engine at DOCKER_HOST (task test starts one), with every tool's image as its
    build context is now: built here, when a test first needs one, unless the engine has it already
    (workflows/images.py: a label holds the context's sha256)."""
    import docker

    from workflows.images import LOCAL_BASE, build_images

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no container engine at DOCKER_HOST ({exc}); `task test` starts one (scripts/engines.sh up)")
    build_images(os.environ.get("BASE_IMAGE") or LOCAL_BASE)
    return str(client.api.base_url)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A Slurm cluster answering `sinfo` (task test starts the dev cluster: task slurm-up)."""
    result = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"no Slurm cluster answers ({result.stderr.strip()}); start one with `task slurm-up`")
    return result.stdout.strip()


BACKEND_PARAMS = [
    pytest.param("local", id="local"),
    pytest.param("container", id="container", marks=pytest.mark.container),
    pytest.param("slurm", id="slurm", marks=pytest.mark.slurm),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, with its engine or cluster checked first."""
    if request.param == "container":
        request.getfixturevalue("container_engine")
    elif request.param == "slurm":
        request.getfixturevalue("slurm_cluster")
    return str(request.param)


@pytest.fixture
def dispatching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the API trigger flow runs (unit tests keep dispatch off)."""
    monkeypatch.setattr(get_settings().prefect, "dispatch", "background")
