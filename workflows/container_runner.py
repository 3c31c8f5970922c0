"""The command of a Docker-pool flow run's container (`task deploy-flow FLOW=<name> POOL=docker`).

Prefect's Docker worker (prefect-docker, `task worker-docker`) starts one container of the platform's
image per flow run, with the flow run's id in PREFECT__FLOW_RUN_ID. This runs that flow run, as the
calculation worker runs its own in-process: the workflow run is marked RUNNING, the flow (sync or
async: this container is its alone, so it may block) runs with Prefect's engine, and how it ended is
recorded. Its `run_tool` steps are not executed here: each is dispatched to the calculation worker
as a calculation (a run-calculation flow run) and awaited, so no tool runs in this container.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Any
from uuid import UUID

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    # imported once Django is set up: these import its models, and Prefect, which reads the
    # PREFECT_API_URL that the settings give
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_async, run_flow_sync
    from prefect.states import Failed

    from workflows.execution.workflow_runs import begin_workflow_run, end_workflow_run
    from workflows.flow_code import FlowCodeError, load_flow
    from workflows.orchestration.orchestrator import workflow_run_tags

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flow_run_id = UUID(os.environ["PREFECT__FLOW_RUN_ID"])
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.deployment_id is None:
            sys.exit(f"flow run {flow_run_id} has no deployment")
        deployment = client.read_deployment(flow_run.deployment_id)
    workflow_run = workflow_run_tags(flow_run.tags)
    worker = f"docker:{socket.gethostname()}:{os.getpid()}"
    if workflow_run is not None and not asyncio.run(
        begin_workflow_run(flow_run_id, *workflow_run, worker=worker, remote=True)
    ):
        return
    final: Any
    try:  # the deployed bytes, as the calculation worker checks them: the image may hold other code
        flow: Any = load_flow(deployment.entrypoint, deployment.version)
    except FlowCodeError as exc:
        final = Failed(message=f"the flow's code cannot be loaded: {exc}")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, final, force=True)
    else:
        if flow.isasync:
            final = asyncio.run(
                run_flow_async(flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
            )
        else:
            final = run_flow_sync(flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
    if workflow_run is not None:
        asyncio.run(end_workflow_run(flow_run_id, *workflow_run, final))


if __name__ == "__main__":
    main()
