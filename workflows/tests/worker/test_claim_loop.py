"""The claim loop runs the code deployed last: an ops engineer edits a flow, deploys it again, and
the next run is the new code, with the same worker process; a flow undeployed, or whose file is not
the one deployed, is neither listed nor launched."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from emgapiv2.config import BASE_DIR
from workflows.tests.conftest import WorkerProcess
from workflows.tests.test_integration import Api
from workflows.tests.test_workflows import _task_env, flow_file, run_workflow, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api(live_server: Any, calculation_worker: WorkerProcess, dispatching: None) -> Api:
    return Api(live_server.url)


def _source(version: int) -> Any:
    """An ops flow that says which version of it ran: version 1 completes, version 2 fails saying so."""
    body = "return greeting" if version == 1 else 'raise ValueError(f"{greeting}: version 2 ran")'

    def source(name: str) -> str:
        return f'''"""An ops flow the test edits."""

from prefect import flow


@flow(name="{name.replace("_", "-")}", persist_result=False)
async def {name}(greeting: str = "hello") -> str:
    """Greet, as version {version} does."""
    {body}
'''

    return source


def _listed(api: Api) -> set[str]:
    response = api.http.get("/workflows")
    assert response.status_code == 200, response.text
    return {workflow["name"] for workflow in response.json()}


def test_a_redeployed_flow_runs_its_new_code_without_a_worker_restart_and_an_undeployed_one_is_gone(
    api: Api, calculation_worker: WorkerProcess
) -> None:
    from prefect.client.orchestration import get_client

    from calculations.models import WorkflowRun
    from workflows.orchestration.deployments import deploy

    worker_pid = calculation_worker.pid
    with flow_file("edited", _source(1)) as function:
        path = BASE_DIR / "workflows" / "flows" / f"{function}.py"
        workflow = function.replace("_", "-")
        deploy([function])
        assert workflow in _listed(api)
        first = wait_run(api, run_workflow(api, workflow, {"greeting": "hi"})["id"], timeout_seconds=30)
        assert first["state"] == "COMPLETE", first["error"]

        path.write_text(_source(2)(function))  # an edit, deployed again
        deploy([function])
        second = wait_run(api, run_workflow(api, workflow, {"greeting": "hi"})["id"], timeout_seconds=30)
        assert second["state"] == "EXECUTOR_ERROR" and "hi: version 2 ran" in second["error"], second
        assert calculation_worker.process is not None and calculation_worker.process.poll() is None
        assert calculation_worker.pid == worker_pid, "the worker was not restarted"

        # edited again but not deployed: the API neither lists nor launches it, and a flow run
        # started in the dashboard fails on the worker in one line, without a retry
        path.write_text(_source(1)(function) + "# not deployed\n")
        assert workflow not in _listed(api)
        refused = api.http.post(f"/workflows/{workflow}/runs", json={"params": {}})
        assert refused.status_code == 404 and "its code cannot be loaded" in refused.json()["detail"]
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"{workflow}/{workflow}")
            flow_run = client.create_flow_run_from_deployment(deployment.id, parameters={})
            deadline = time.monotonic() + 30
            while not ((state := client.read_flow_run(flow_run.id).state) and state.is_final()):
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
        assert state.is_failed() and "differs from the deployed one: deploy it again" in (state.message or "")
        adopted = WorkflowRun.objects.get(flow_run_id=flow_run.id)
        assert adopted.state == "EXECUTOR_ERROR" and adopted.attempt == 1
        assert f"{function}.py on this host differs from the deployed one" in adopted.error
        assert "\n" not in adopted.error and "Traceback" not in adopted.error

        undeployed = subprocess.run(
            [str(BASE_DIR / ".venv" / "bin" / "task"), "undeploy-flow", f"FLOW={function}"],
            cwd=BASE_DIR, capture_output=True, text=True, env=_task_env(),
        )  # fmt: skip
        assert undeployed.returncode == 0, undeployed.stdout + undeployed.stderr
        assert f"undeployed {workflow}/{workflow}" in undeployed.stdout
    assert workflow not in _listed(api)
    gone = api.http.post(f"/workflows/{workflow}/runs", json={"params": {"greeting": "hi"}})
    assert gone.status_code == 404 and f"workflow {workflow!r} not found" in gone.json()["detail"]
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 3


def test_the_platforms_own_flows_cannot_be_undeployed(prefect_server: str) -> None:
    from workflows.orchestration.deployments import DeployError, undeploy

    for name in ("pipeline", "run-calculation", "run_calculation", "tool-obabel"):
        with pytest.raises(DeployError, match="one of the platform's own flows: it cannot be undeployed"):
            undeploy(name)
    with pytest.raises(DeployError, match="no deployment of a flow named 'no_such_flow'"):
        undeploy("no_such_flow")
