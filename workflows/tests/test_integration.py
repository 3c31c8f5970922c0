"""The whole path through the HTTP API with a real Prefect server and worker, on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from calculations.actions import do_create_api_token
from demo.synthetic import fasta, genome_with_genes, protein_family

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


class Api:
    def __init__(self, base_url: str, user: str = "integration") -> None:
        token = do_create_api_token(user)
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def upload(self, name: str, content: bytes) -> str:
        response = self.http.post("/files", files={"file": (name, content)})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def submit(self, tool: str, inputs: dict[str, str], params: dict[str, Any], **extra: Any) -> httpx.Response:
        return self.http.post(f"/tools/{tool}/calculations", json={"inputs": inputs, "params": params, **extra})

    def wait_for(self, calculation_id: str, states: set[str], timeout_seconds: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            calc: dict[str, Any] = self.http.get(f"/calculations/{calculation_id}").json()
            if calc["state"] in states:
                return calc
            assert time.monotonic() < deadline, f"still {calc['state']} after {timeout_seconds} s: {calc}"
            time.sleep(0.1)

    def content(self, file_id: str) -> bytes:
        response = self.http.get(f"/files/{file_id}/content")
        assert response.status_code == 200
        return response.content


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


def _flow_run_state(flow_run_id: str, timeout_seconds: float = 15) -> str:
    """The flow run's final state. The calculation row is final first: the flow returns, and
    only then does the engine report its state to Prefect."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(flow_run_id))
            assert run.name.startswith("calc-")
            if (run.state and run.state.is_final()) or time.monotonic() > deadline:
                return run.state.type.value if run.state else "NONE"
            time.sleep(0.2)


def test_prodigal_end_to_end_matches_a_direct_run(api: Api, tmp_path: Path, backend: str) -> None:
    rng = random.Random(99)
    genome = fasta({"c1": genome_with_genes(rng, protein_family(rng, length=220, members=3, identity=0.8),
                                            length=30_000)}).encode()  # fmt: skip
    inputs = {"contigs": api.upload("genome.fna", genome)}
    response = api.submit("prodigal", inputs, {"mode": "single"}, backend=backend, use_cache=False)
    assert response.status_code == 202
    calc = api.wait_for(response.json()["id"], TERMINAL)
    assert calc["state"] == "COMPLETE", calc["error"]
    assert calc["backend"] == backend

    (tmp_path / "g.fna").write_bytes(genome)
    subprocess.run(["prodigal", "-q", "-i", "g.fna", "-a", "p.faa", "-f", "gff", "-o", "g.gff", "-p", "single",
                    "-g", "11"], cwd=tmp_path, check=True)  # fmt: skip
    assert api.content(calc["outputs"]["proteins"][0]) == (tmp_path / "p.faa").read_bytes()
    assert api.content(calc["outputs"]["genes"][0]) == (tmp_path / "g.gff").read_bytes()
    assert calc["flow_run_id"] and _flow_run_state(calc["flow_run_id"]) == "COMPLETED"
    assert calc["provenance"]["attempts"][0]["host"]


def test_a_failing_tool_ends_in_executor_error_with_its_stderr(api: Api, backend: str) -> None:
    inputs = {"contigs": api.upload("short.fna", b">s\nACGTACGTAA\n")}
    response = api.submit("prodigal", inputs, {"mode": "single"}, backend=backend, use_cache=False)
    calc = api.wait_for(response.json()["id"], TERMINAL)
    assert calc["state"] == "EXECUTOR_ERROR"
    assert "Sequence must be 20000 characters" in calc["error"]
    assert calc["outputs"] == {}
    logs = api.http.get(f"/calculations/{calc['id']}/logs").json()
    assert "Sequence must be 20000 characters" in logs["stderr"]
    assert _flow_run_state(calc["flow_run_id"]) == "FAILED"


def _job_is_running(backend: str, job_id: str) -> bool:
    """Whether the process, container or Slurm job of a calculation still runs."""
    if backend == "local":
        status = Path(f"/proc/{job_id}/status")
        return status.exists() and "State:\tZ" not in status.read_text()
    if backend == "container":
        import docker

        try:
            return bool(docker.from_env().containers.get(job_id).status == "running")
        except docker.errors.NotFound:
            return False
    state = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return state.stdout.strip() in {"PENDING", "RUNNING", "COMPLETING"}


def test_cancel_stops_a_long_run_and_its_job(api: Api, backend: str) -> None:
    response = api.submit("sleep", {"text": api.upload("t.txt", b"x\n")}, {"seconds": 120}, backend=backend)
    assert response.status_code == 202, response.text
    calc = api.wait_for(response.json()["id"], {"RUNNING"})
    job_id = calc["provenance"]["attempts"][0]["job_id"]
    assert _job_is_running(backend, job_id)

    cancel = api.http.post(f"/calculations/{calc['id']}/cancel")
    assert cancel.status_code == 202 and cancel.json()["state"] == "CANCELING"
    calc = api.wait_for(calc["id"], TERMINAL, timeout_seconds=20)
    assert calc["state"] == "CANCELED" and calc["outputs"] == {}
    assert not _job_is_running(backend, job_id)


@pytest.mark.slurm
def test_a_slurm_job_cancelled_from_outside_fails_the_calculation(api: Api, slurm_cluster: str) -> None:
    response = api.submit("sleep", {"text": api.upload("t.txt", b"y\n")}, {"seconds": 120}, backend="slurm")
    calc = api.wait_for(response.json()["id"], {"RUNNING"})
    job_id = calc["provenance"]["attempts"][0]["job_id"]
    subprocess.run(["scancel", job_id], check=True)
    calc = api.wait_for(calc["id"], TERMINAL, timeout_seconds=20)
    assert calc["state"] == "SYSTEM_ERROR" and calc["outputs"] == {}
    assert calc["error"] == f"Slurm job {job_id} was cancelled outside the platform (scancel or an administrator)"


def test_identical_resubmission_is_answered_from_the_cache(api: Api) -> None:
    molecules = api.upload("ethanol.smi", b"CCO\n")
    first = api.wait_for(
        api.submit("obabel", {"molecules": molecules}, {"output_format": "inchikey"}).json()["id"], TERMINAL
    )
    assert first["state"] == "COMPLETE", first["error"]
    again = api.submit("obabel", {"molecules": molecules}, {"output_format": "inchikey"})
    assert again.status_code == 200
    cached = again.json()
    assert cached["state"] == "COMPLETE" and cached["cached_from"] == first["id"] and cached["flow_run_id"] is None
    assert api.content(cached["outputs"]["molecules"][0]).strip() == b"LFQSCWFLJHTTHZ-UHFFFAOYSA-N"
    fresh = api.submit("obabel", {"molecules": molecules}, {"output_format": "inchikey"}, use_cache=False)
    assert fresh.status_code == 202 and fresh.json()["cached_from"] is None


def test_the_worker_reconciles_as_a_service_and_the_runs_page_stays_clean(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A calculation that never reached Prefect is dispatched by the reconciler each worker runs, with
    no flow run of the reconciler's own (it made 2,880 a day as a scheduled flow)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from emgapiv2.config import get_settings
    from workflows.orchestration.deployments import deploy

    deploy(["reconcile-calculations"])  # runnable by hand, never scheduled
    monkeypatch.setattr(get_settings().prefect, "dispatch", "off")  # as if Prefect had been down
    calc = api.submit("obabel", {"molecules": api.upload("m.smi", b"CC\n")}, {}, use_cache=False).json()
    time.sleep(0.5)
    assert api.http.get(f"/calculations/{calc['id']}").json()["flow_run_id"] is None
    done = api.wait_for(calc["id"], TERMINAL, timeout_seconds=60)  # dispatch_after (10 s) + the interval
    assert done["state"] == "COMPLETE" and done["flow_run_id"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("reconcile-calculations/reconcile-calculations")
        assert client.read_deployment_schedules(deployment.id) == []
        # (other tests run the flow by hand, without its deployment: a schedule would make deployment runs)
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        assert runs == [], "the reconciler's deployment made flow runs"
        flow_run = client.read_flow_run(UUID(done["flow_run_id"]))
        assert {"tool:obabel", "backend:local"} <= set(flow_run.tags)  # the Runs page filters by them


def test_a_run_calculation_started_by_hand_for_nothing_fails_in_one_line(api: Api) -> None:
    """As an operator would from the dashboard: an id that does not exist, or a calculation that ended."""
    from prefect.client.orchestration import get_client

    from emgapiv2.config import get_settings

    done = api.wait_for(
        api.submit("obabel", {"molecules": api.upload("h.smi", b"CCN\n")}, {}, use_cache=False).json()["id"], TERMINAL
    )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(get_settings().prefect.deployment)
        for calculation_id, expected in ((uuid4(), "does not exist"), (done["id"], "already ended COMPLETE")):
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"calculation_id": str(calculation_id)}
            )
            deadline = time.monotonic() + 30
            while not ((state := client.read_flow_run(run.id).state) and state.is_final()):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert state.is_failed() and expected in (state.message or ""), state
            assert "\n" not in (state.message or "")


def test_a_deleted_flow_run_does_not_fail_a_calculation_its_worker_is_running(api: Api) -> None:
    from prefect.client.orchestration import get_client

    from workflows.flows.reconcile_calculations import reconcile_calculations_flow

    response = api.submit("sleep", {"text": api.upload("t.txt", b"z\n")}, {"seconds": 4}, use_cache=False)
    calc = api.wait_for(response.json()["id"], {"RUNNING"})
    with get_client(sync_client=True) as client:
        client.delete_flow_run(UUID(calc["flow_run_id"]))  # an operator, or anyone who reached Prefect
    counts = asyncio.run(reconcile_calculations_flow())
    assert counts["retried"] == counts["failed"] == 0
    calc = api.wait_for(calc["id"], TERMINAL, timeout_seconds=30)
    assert (calc["state"], calc["attempts"]) == ("COMPLETE", 1)


def test_the_prefect_api_refuses_requests_without_credentials(prefect_server: str) -> None:
    import os

    anonymous = httpx.post(f"{prefect_server}/flow_runs/filter", json={}, timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.post(f"{prefect_server}/flow_runs/filter", json={}, auth=("emgapi-test", "guess"), timeout=10)
    assert wrong.status_code == 401
    assert httpx.delete(f"{prefect_server}/flow_runs/{UUID(int=1)}", timeout=10).status_code == 401
    user, password = os.environ["PREFECT_API_AUTH_STRING"].split(":", 1)
    assert (
        httpx.post(f"{prefect_server}/flow_runs/filter", json={}, auth=(user, password), timeout=10).status_code == 200
    )
