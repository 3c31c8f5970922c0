"""Workflows through the HTTP API, with a real Prefect server and worker and real tools: the built-in
pipeline (a DAG posted as data, maps), failures and cancels, an ops engineer's own flow deployed with
`task deploy-flow`, and a worker killed mid-map again and again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model

from emgapiv2.config import BASE_DIR
from workflows.tests.conftest import ServiceProcess, WorkerProcess
from workflows.tests.test_integration import TERMINAL, Api

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
DEMO = BASE_DIR / "demo" / "data"


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


def run_workflow(api: Api, name: str, params: dict[str, Any]) -> dict[str, Any]:
    response = api.http.post(f"/workflows/{name}/runs", json={"params": params})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_run(api: Api, run_id: str, states: set[str] = TERMINAL, timeout_seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        run: dict[str, Any] = api.http.get(f"/workflow-runs/{run_id}").json()
        if run["state"] in states:
            return run
        assert time.monotonic() < deadline, f"still {run['state']} after {timeout_seconds} s: {run}"
        time.sleep(0.2)


def molecules(api: Api, count: int, tag: str) -> list[str]:
    """`count` distinct tiny molecules (a carbon chain each), uploaded as SMILES files."""
    return [api.upload(f"{tag}-{i}.smi", f"{'C' * (i % 40 + 1)}O {tag}-{i}\n".encode()) for i in range(count)]


def test_a_pipeline_gives_the_bytes_the_tools_give_when_run_bare(api: Api, tmp_path: Path) -> None:
    genome, profile = (
        api.upload("genome.fna", (DEMO / "genome.fna").read_bytes()),
        api.upload("family.hmm", (DEMO / "family.hmm").read_bytes()),
    )
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "meta"}, "inputs": {"contigs": f"file:{genome}"},
                  "use_cache": False},
        "hits": {"tool": "hmmsearch", "params": {"evalue": 1e-5},
                 "inputs": {"profile": f"file:{profile}", "sequences": "genes.proteins"}, "use_cache": False},
    }  # fmt: skip
    run = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"])
    assert run["state"] == "COMPLETE", run["error"]
    assert [(s["name"], s["tool"], s["state"]) for s in run["steps"]] == [
        ("genes", "prodigal", "COMPLETE"),
        ("hits", "hmmsearch", "COMPLETE"),
    ]
    hits = api.http.get(f"/calculations/{run['steps'][1]['calculation_id']}").json()
    assert hits["workflow_run"] == run["id"] and hits["step"] == "hits"

    subprocess.run(["prodigal", "-q", "-i", str(DEMO / "genome.fna"), "-a", "p.faa", "-f", "gff", "-o", "g.gff",
                    "-p", "meta"], cwd=tmp_path, check=True)  # fmt: skip
    subprocess.run(["hmmsearch", "--tblout", "hits.tbl", "-o", "report.txt", "-E", "1e-05", "--cpu", "1",
                    str(DEMO / "family.hmm"), "p.faa"], cwd=tmp_path, check=True)  # fmt: skip
    assert api.content(hits["inputs"]["sequences"]) == (tmp_path / "p.faa").read_bytes()
    ours = [line for line in api.content(hits["outputs"]["hits"][0]).decode().splitlines() if not line.startswith("#")]
    bare = [line for line in (tmp_path / "hits.tbl").read_text().splitlines() if not line.startswith("#")]
    assert ours == bare and ours  # (the comment lines name the files and the time)


def test_a_map_over_fifty_inputs(api: Api) -> None:
    files = molecules(api, 50, "map")
    steps = {"convert": {"tool": "obabel", "params": {"output_format": "sdf"},
                         "inputs": {"molecules": {"each": [f"file:{f}" for f in files]}}}}  # fmt: skip
    run = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"])
    assert run["state"] == "COMPLETE", run["error"]
    assert sorted(s["index"] for s in run["steps"]) == list(range(50))
    assert {s["state"] for s in run["steps"]} == {"COMPLETE"}
    first = api.http.get(f"/calculations/{run['steps'][0]['calculation_id']}").json()
    assert b"V2000" in api.content(first["outputs"]["molecules"][0])


def test_each_steps_task_run_logs_how_it_ended_and_a_maps_progress_counts_its_steps(api: Api) -> None:
    """One INFO line per step in its task run's logs (state, argv relative to its work directory, its
    calculation's admin page), while the rest of a step's lines stay at the worker's WARNING."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from calculations.admin_links import admin_path
    from emgapiv2.config import get_settings

    files = molecules(api, 2, "logged")
    steps = {"convert": {"tool": "obabel", "params": {"output_format": "sdf"}, "use_cache": False,
                         "inputs": {"molecules": {"each": [f"file:{f}" for f in files]}}}}  # fmt: skip
    run = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"])
    assert run["state"] == "COMPLETE", run["error"]
    flow_run = UUID(run["flow_run_id"])
    deadline = time.monotonic() + 20  # the log handler sends its lines in batches
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run])))
            ends = [log for log in logs if log.task_run_id is not None and "argv:" in log.message]
            if len(ends) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run]))
        )
    assert len(ends) == 2 and len({log.task_run_id for log in ends}) == 2  # one line per step, in its task run
    for step in run["steps"]:
        (line,) = [log for log in ends if admin_path("calculation", step["calculation_id"]) in log.message]
        assert line.level == 20 and line.message.startswith("COMPLETE (attempt 1); argv: obabel ")
        assert str(get_settings().calculations_dir) not in line.message and "inputs/molecules" in line.message
    quiet = [log for log in logs if log.task_run_id is not None and log.level < 30 and log not in ends]
    assert not quiet, [log.message for log in quiet]  # the rest of a step's lines: WARNING and above only
    (progress,) = [artifact for artifact in artifacts if artifact.type == "progress"]
    assert progress.description == "2 of 2 steps done" and float(str(progress.data)) == 100.0


def test_a_failing_step_fails_the_run_and_what_depends_on_it_never_starts(api: Api) -> None:
    short = api.upload("short.fna", b">s\nACGTACGTAA\n")
    profile = api.upload("family.hmm", (DEMO / "family.hmm").read_bytes())
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "single"}, "inputs": {"contigs": f"file:{short}"}},
        "hits": {"tool": "hmmsearch", "inputs": {"profile": f"file:{profile}", "sequences": "genes.proteins"}},
    }
    run = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"])
    assert run["state"] == "EXECUTOR_ERROR"
    assert "step 'genes'" in run["error"] and "prodigal" in run["error"]
    assert "Sequence must be 20000 characters" in run["error"]
    assert [s["name"] for s in run["steps"]] == ["genes"]  # hits never started


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "params, error",
    [
        ({"steps": "not a DAG"}, "Prefect refused to create its flow run (HTTP 409)"),
        ({"steps": {"a": {"__prefect_kind": "workspace_variable", "variable_name": "nope"}}},
         "its parameters cannot be sent to Prefect: params.steps.a.__prefect_kind: a key starting '__prefect'"),
        ({"steps": _deep(800)}, "its parameters cannot be sent to Prefect: params.steps.a.a"),
    ],
)  # fmt: skip
def test_a_flow_run_prefect_would_refuse_ends_the_run_once_and_frees_its_quota(
    prefect_server: str, caplog: pytest.LogCaptureFixture, params: dict[str, Any], error: str
) -> None:
    """Parameters Prefect's server rejects (they no longer fit the deployed flow), or that hold its
    placeholders or nest deeper than its client can (a run stored before the API checked them): the
    run ends SYSTEM_ERROR once, not QUEUED for ever, holding a quota slot and logging a traceback
    every 30 s. Prefect's answer, which can name its server's variables, is logged once, not shown."""
    import logging

    from prefect.client.orchestration import get_client

    from calculations import actions
    from calculations.models import WorkflowRun
    from workflows.orchestration.orchestrator import create_flow_run

    actions.do_create_api_token("refused")
    actions.do_set_user_quota("refused", max_active_calculations=1)
    owner_id = get_user_model().objects.get(username="refused").id
    run = actions.do_create_workflow_run(owner_id, "pipeline", params)
    with (
        caplog.at_level(logging.WARNING, logger="workflows.orchestration.flow_runs"),
        get_client(sync_client=True) as client,
    ):
        assert create_flow_run(client, "workflow run", run.id) is None
        assert create_flow_run(client, "workflow run", run.id) is None  # once: it is over
    ended = WorkflowRun.objects.get(id=run.id)
    assert (ended.state, ended.flow_run_id) == ("SYSTEM_ERROR", None)
    assert error in ended.error and "not of type" not in ended.error  # (Prefect's own words stay in the log)
    assert list(ended.events.values_list("to_state", flat=True)) == ["QUEUED", "SYSTEM_ERROR"]
    logged = [r for r in caplog.records if "Prefect refused" in r.getMessage()]
    assert len(logged) == (1 if "HTTP 409" in error else 0) and all(r.exc_info is None for r in logged)
    actions.do_create_workflow_run(owner_id, "pipeline", {"steps": {}})  # its quota slot is free again


def test_a_flow_run_prefect_cannot_be_asked_for_stays_queued_for_the_reconciler(prefect_server: str) -> None:
    import httpx
    from prefect.client.orchestration import SyncPrefectClient

    from calculations import actions
    from calculations.models import WorkflowRun
    from workflows.orchestration.orchestrator import create_flow_run

    actions.do_create_api_token("unreachable")
    owner_id = get_user_model().objects.get(username="unreachable").id
    run = actions.do_create_workflow_run(owner_id, "pipeline", {"steps": {}})
    with SyncPrefectClient("http://127.0.0.1:9/api") as dead, pytest.raises(httpx.ConnectError):
        create_flow_run(dead, "workflow run", run.id)
    assert WorkflowRun.objects.filter(id=run.id, state="QUEUED", flow_run_id=None).exists()


def _processes_of(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "pgrep" not in line]


def test_cancel_mid_map_cancels_every_step_and_leaves_no_process(api: Api) -> None:
    texts = [api.upload(f"t{i}.txt", f"cancel-map {i} {time.time()}\n".encode()) for i in range(6)]
    steps = {"wait": {"tool": "sleep", "params": {"seconds": 97.5},
                      "inputs": {"text": {"each": [f"file:{t}" for t in texts]}}}}  # fmt: skip
    run = run_workflow(api, "pipeline", {"steps": steps})
    deadline = time.monotonic() + 60
    while sum(s["state"] == "RUNNING" for s in api.http.get(f"/workflow-runs/{run['id']}").json()["steps"]) < 2:
        assert time.monotonic() < deadline, "no step started"
        time.sleep(0.2)
    assert _processes_of("sleep 97.5")
    canceled = api.http.post(f"/workflow-runs/{run['id']}/cancel")
    assert canceled.status_code == 202 and canceled.json()["state"] == "CANCELING"
    run = wait_run(api, run["id"], timeout_seconds=30)
    assert run["state"] == "CANCELED"
    assert run["steps"] and {s["state"] for s in run["steps"]} == {"CANCELED"}
    assert not _processes_of("sleep 97.5")
    assert api.http.post(f"/workflow-runs/{run['id']}/cancel").status_code == 409


@contextmanager
def flow_file(prefix: str, source: Callable[[str], str]) -> Iterator[str]:
    """A flow file an ops engineer writes (`source(name)`), as the test's own module in workflows/flows/."""
    name = f"{prefix}_{int(time.time() * 1000)}"
    path = BASE_DIR / "workflows" / "flows" / f"{name}.py"
    path.write_text(source(name))
    try:
        yield name
    finally:
        path.unlink()


@pytest.fixture
def ops_flow() -> Iterator[str]:
    with flow_file("count_genes", _ops_flow_source) as name:
        yield name


def _ops_flow_source(name: str) -> str:
    return f'''"""An ops flow written by the test."""

import asyncio

from prefect import flow

from workflows.sdk import FileId, run_tool


@flow(name="{name.replace("_", "-")}")
async def {name}(genomes: list[FileId], mode: str = "meta") -> int:
    """Call the genes of every genome; return how many output files there are."""
    called = await asyncio.gather(*(run_tool("prodigal", {{"contigs": g}}, {{"mode": mode}}) for g in genomes))
    return sum(len(c.files) for c in called)
'''


def test_an_ops_flow_is_deployed_with_task_deploy_flow_and_launched_through_the_api(
    api: Api, ops_flow: str, prefect_server: str
) -> None:
    deployed = subprocess.run(
        [str(BASE_DIR / ".venv" / "bin" / "task"), "deploy-flow", f"FLOW={ops_flow}"],
        cwd=BASE_DIR, capture_output=True, text=True, env=_task_env(),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    workflow = ops_flow.replace("_", "-")
    assert f"deployed {workflow}/{workflow}" in deployed.stdout
    listed = api.http.get(f"/workflows/{workflow}").json()
    assert listed["parameters_schema"]["properties"]["genomes"]["items"]["x-emgapi-file"] is True
    assert "Call the genes" in listed["description"]

    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    run = wait_run(api, run_workflow(api, workflow, {"genomes": [genome, genome]})["id"])
    assert run["state"] == "COMPLETE", run["error"]
    assert [(s["name"], s["index"]) for s in run["steps"]] == [("prodigal", 0), ("prodigal", 1)]

    other = Api(str(api.http.base_url).removesuffix("/api/v2/"), user="someone-else")
    assert other.http.post(f"/workflows/{workflow}/runs", json={"params": {"genomes": [genome]}}).status_code == 404
    bad = api.http.post(f"/workflows/{workflow}/runs", json={"params": {"genomes": "x", "mode": 3}})
    assert bad.status_code == 422 and "params.genomes" in bad.json()["detail"]


def test_a_sync_flow_is_refused_on_the_in_process_pool_with_where_it_belongs() -> None:
    from prefect import flow

    from workflows.orchestration.deployments import Deployable, DeployError, check_pool

    @flow(name="blocking")
    def blocking() -> None:
        pass

    with pytest.raises(DeployError, match="POOL=docker"):
        check_pool(Deployable(blocking), "calculations")


def _task_env() -> dict[str, str]:
    """`task deploy-flow` as an ops engineer runs it, against the test's Prefect server and database."""
    import os

    from django.db import connection

    from emgapiv2.config import get_settings
    from workflows.tests.conftest import _postgres_url

    return {
        **os.environ,
        "EMGAPI_DB__URL": _postgres_url(connection.settings_dict["NAME"]),
        "DJANGO_SETTINGS_MODULE": "emgapiv2.settings",
        "EMGAPI_DATA_DIR": str(get_settings().data_dir),
    }


class DockerWorkerProcess(ServiceProcess):
    """Prefect's own Docker worker (prefect-docker) on the Docker work pool: `task worker-docker`."""

    argv = [sys.executable, "-m", "workflows.docker_worker"]

    def wait_ready(self, log_offset: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        while "started!" not in self.log.read_text()[log_offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)


@pytest.fixture
def docker_worker(
    calculation_worker: WorkerProcess, container_engine: str, tmp_path: Path
) -> Iterator[DockerWorkerProcess]:
    from workflows.images import LOCAL_BASE, build_app_image

    if ready := os.environ.get("EMGAPI_TEST_APP_IMAGE_READY"):  # scripts/test.sh builds it in the background
        deadline = time.monotonic() + 600
        while not Path(ready).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if Path(ready).exists() and Path(ready).read_text().strip() != "0":
            pytest.fail("the app image's build failed: scripts/test.sh shows its output at the end")
    build_app_image(os.environ.get("BASE_IMAGE") or LOCAL_BASE)  # minutes cold; kept while its context is unchanged
    worker = DockerWorkerProcess(calculation_worker.env, tmp_path / "docker-worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def sync_flow() -> Iterator[str]:
    with flow_file("sync_genes", _sync_flow_source) as name:
        yield name


def _sync_flow_source(name: str) -> str:
    """A sync flow: it may block (it gets a container of its own)."""
    return f'''"""A sync ops flow written by the test."""

import time

from prefect import flow

from workflows.sdk import FileId, run_tool_sync


@flow(name="{name.replace("_", "-")}")
def {name}(genome: FileId) -> str:
    """Call the genes of a genome, blocking while it runs."""
    time.sleep(0.1)  # a blocking call: fine in its own container
    return str(run_tool_sync("prodigal", {{"contigs": genome}}, {{"mode": "meta"}}).outputs["proteins"])
'''


@pytest.mark.system  # the platform's image, built cold for this test alone
def test_a_sync_flow_runs_on_the_docker_pool_and_its_steps_on_the_calculation_worker(
    api: Api, sync_flow: str, docker_worker: DockerWorkerProcess, calculation_worker: WorkerProcess
) -> None:
    task = [str(BASE_DIR / ".venv" / "bin" / "task"), "deploy-flow", f"FLOW={sync_flow}"]
    refused = subprocess.run(task, cwd=BASE_DIR, capture_output=True, text=True, env=_task_env())
    assert refused.returncode != 0
    assert "is synchronous" in refused.stderr and "POOL=docker" in refused.stderr

    deployed = subprocess.run([*task, "POOL=docker"], cwd=BASE_DIR, capture_output=True, text=True, env=_task_env())
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    run = wait_run(api, run_workflow(api, sync_flow.replace("_", "-"), {"genome": genome})["id"], timeout_seconds=240)
    assert run["state"] == "COMPLETE", run["error"] + docker_worker.log.read_text()[-3000:]
    assert [(s["name"], s["tool"], s["state"]) for s in run["steps"]] == [("prodigal", "prodigal", "COMPLETE")]
    step = api.http.get(f"/calculations/{run['steps'][0]['calculation_id']}").json()
    # the tool ran on the calculation worker (a flow run of its own), not in the flow's container
    assert f":{calculation_worker.pid}:" in step["provenance"]["attempts"][0]["worker"]
    assert step["flow_run_id"] and step["flow_run_id"] != run["flow_run_id"]


def _run_states(run_id: str) -> list[str]:
    from calculations.models import WorkflowRunEvent

    return list(WorkflowRunEvent.objects.filter(workflow_run_id=UUID(run_id)).values_list("to_state", flat=True))


def _steps_in_flight(api: Api, run_id: str) -> int:
    steps = api.http.get(f"/workflow-runs/{run_id}").json()["steps"]
    return sum(s["state"] in ("INITIALIZING", "RUNNING", "CANCELING") for s in steps)


@pytest.mark.container
def test_steps_in_flight_count_against_the_owners_quota(api: Api, container_engine: str, live_server: Any) -> None:
    from calculations.actions import do_set_user_quota

    do_set_user_quota("quota-one", max_active_calculations=1)
    user = Api(live_server.url, user="quota-one")
    texts = [user.upload(f"q{i}.txt", f"quota {i} {time.time()}\n".encode()) for i in range(4)]
    steps = {"wait": {"tool": "sleep", "params": {"seconds": 1}, "backend": "container", "use_cache": False,
                      "inputs": {"text": {"each": [f"file:{t}" for t in texts]}}}}  # fmt: skip
    run = run_workflow(user, "pipeline", {"steps": steps})
    most, deadline = 0, time.monotonic() + 180
    while (shown := user.http.get(f"/workflow-runs/{run['id']}").json())["state"] not in TERMINAL:
        most = max(most, sum(s["state"] in ("INITIALIZING", "RUNNING", "CANCELING") for s in shown["steps"]))
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert shown["state"] == "COMPLETE", shown["error"]  # waiting for a slot never fails the run
    assert most == 1 and len(shown["steps"]) == 4  # a quota of 1: one step at a time, never 4


def test_local_slots_are_shared_fairly_between_users(api: Api, live_server: Any) -> None:
    """Another user's one-step pipeline, alone and while a 60-step map holds the local slots: it
    waits for a slot in turn, not behind the whole map (measured with 300 steps; before: 1.3 s alone,
    20.6 s beside the map; now 1.0 s and 1.1 s). Behind the map it would find none of its steps left;
    in turn, it ends with a third of them or more still to run."""
    other = Api(live_server.url, user="someone-else")

    def one_step(tag: str) -> float:
        molecule = other.upload(f"{tag}.smi", f"CCCO {tag}-{time.time()}\n".encode())
        steps = {"convert": {"tool": "obabel", "params": {"output_format": "sdf"}, "use_cache": False,
                             "inputs": {"molecules": f"file:{molecule}"}}}  # fmt: skip
        started = time.monotonic()
        run = wait_run(other, run_workflow(other, "pipeline", {"steps": steps})["id"], timeout_seconds=300)
        assert run["state"] == "COMPLETE", run["error"]
        return time.monotonic() - started

    alone = one_step("alone")
    width = 60
    files = molecules(api, width, "fair")
    steps = {"convert": {"tool": "obabel", "params": {"output_format": "sdf"}, "use_cache": False,
                         "inputs": {"molecules": {"each": [f"file:{f}" for f in files]}}}}  # fmt: skip
    map_started = time.monotonic()
    big = run_workflow(api, "pipeline", {"steps": steps})
    deadline = time.monotonic() + 120
    while _steps_in_flight(api, big["id"]) < 2:
        assert time.monotonic() < deadline, "the map never started"
        time.sleep(0.2)
    beside = one_step("beside")
    left = sum(s["state"] != "COMPLETE" for s in api.http.get(f"/workflow-runs/{big['id']}").json()["steps"])
    left += width - len(api.http.get(f"/workflow-runs/{big['id']}").json()["steps"])
    assert wait_run(api, big["id"], timeout_seconds=600)["state"] == "COMPLETE"
    took = time.monotonic() - map_started
    print(f"\none-step pipeline: {alone:.1f} s alone, {beside:.1f} s beside a {width}-step map ({left} steps left); "
          f"the map took {took:.1f} s")  # fmt: skip
    assert left >= width // 3, f"the one-step pipeline waited behind the map: {beside:.1f} s (alone {alone:.1f} s)"


def test_a_failing_element_fails_the_run_naming_it_and_its_running_siblings_are_canceled(api: Api) -> None:
    short = api.upload("short.fna", b">s\nACGTACGTAA\n")
    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    text = api.upload("t.txt", f"sibling {time.time()}\n".encode())
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "single"}, "use_cache": False,
                  "inputs": {"contigs": {"each": [f"file:{short}", f"file:{genome}"]}}},
        "wait": {"tool": "sleep", "params": {"seconds": 96.5}, "inputs": {"text": f"file:{text}"}},
    }  # fmt: skip
    run = wait_run(api, run_workflow(api, "pipeline", {"steps": steps})["id"], timeout_seconds=60)
    assert run["state"] == "EXECUTOR_ERROR", run
    assert "step 'genes' [0]" in run["error"] and "prodigal" in run["error"]  # the step, its element, the tool
    assert "Sequence must be 20000 characters" in run["error"]  # and the tool's own message
    assert {s["name"]: s["state"] for s in run["steps"] if s["name"] == "wait"} == {"wait": "CANCELED"}
    assert not _processes_of("sleep 96.5")
    assert "CANCELING" not in _run_states(run["id"])  # it failed; no one canceled it


def test_cancelling_one_step_fails_the_run_naming_that_step(api: Api) -> None:
    texts = [api.upload(f"c{i}.txt", f"one-step cancel {i} {time.time()}\n".encode()) for i in range(2)]
    steps = {"wait": {"tool": "sleep", "params": {"seconds": 95.5},
                      "inputs": {"text": {"each": [f"file:{t}" for t in texts]}}}}  # fmt: skip
    run = run_workflow(api, "pipeline", {"steps": steps})
    deadline = time.monotonic() + 60
    while _steps_in_flight(api, run["id"]) < 2:
        assert time.monotonic() < deadline, "the steps never started"
        time.sleep(0.2)
    second = next(s for s in api.http.get(f"/workflow-runs/{run['id']}").json()["steps"] if s["index"] == 1)
    assert api.http.post(f"/calculations/{second['calculation_id']}/cancel").status_code == 202
    run = wait_run(api, run["id"], timeout_seconds=30)
    assert run["state"] == "EXECUTOR_ERROR", run  # not CANCELED: no one canceled the run
    assert "step 'wait' [1]" in run["error"] and "CANCELED" in run["error"] and "cancel" in run["error"], run["error"]
    assert "Cancelling" not in run["error"] and "CANCELING" not in _run_states(run["id"])
    assert {s["state"] for s in run["steps"]} == {"CANCELED"}  # the other step was canceled with the run
    assert not _processes_of("sleep 95.5")
