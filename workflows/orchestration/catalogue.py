"""The workflow catalogue: the deployments users may launch, as Prefect's server lists them.

`task deploy-flow` tags each workflow's deployment with `WORKFLOW_TAG`; the API lists those on the
calculation and Docker work pools (`GET /api/v2/workflows`), and the worker knows by the tag a flow
run of a workflow that an operator started in the dashboard. A deployment whose code the worker could
not load (its file gone, or not the bytes deployed: `workflows/flow_code.py`) is left out, so that a
launch of it is a 404 rather than a run that fails.
"""

from __future__ import annotations

import logging
import threading
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
    WorkPoolFilter,
    WorkPoolFilterName,
)

from calculations.orchestrator import WorkflowInfo
from emgapiv2.config import get_settings
from workflows.flow_code import FlowCodeError, check_loadable, entrypoint_file

logger = logging.getLogger(__name__)

WORKFLOW_TAG = "emgapi-workflow"  # a deployment users may launch (task deploy-flow tags it)

_catalogue: tuple[float, list[WorkflowInfo]] | None = None
_catalogue_lock = threading.Lock()


def deployed_workflows() -> list[WorkflowInfo]:
    """The workflow deployments on the calculation and Docker work pools, read from Prefect at most
    every `workflow.deployments_cache_seconds`."""
    global _catalogue
    settings = get_settings()
    with _catalogue_lock:
        if _catalogue is not None and time.monotonic() - _catalogue[0] < settings.workflow.deployments_cache_seconds:
            return _catalogue[1]
        with get_client(sync_client=True) as client:
            deployments = client.read_deployments(
                deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[WORKFLOW_TAG])),
                work_pool_filter=WorkPoolFilter(
                    name=WorkPoolFilterName(any_=[settings.prefect.work_pool, settings.prefect.docker_work_pool])
                ),
            )
        found = sorted(
            (
                WorkflowInfo(
                    name=deployment.name,
                    description=deployment.description or "",
                    parameters_schema=dict(deployment.parameter_openapi_schema or {}),
                    source_file=entrypoint_file(deployment.entrypoint) if deployment.entrypoint else None,
                )
                for deployment in deployments
                if _is_loadable(deployment.name, deployment.entrypoint, deployment.version)
            ),
            key=lambda info: info.name,
        )
        _catalogue = (time.monotonic(), found)
        return found


def _is_loadable(name: str, entrypoint: str | None, version: str | None) -> bool:
    try:
        check_loadable(entrypoint, version)
    except FlowCodeError as exc:
        logger.warning("workflow %s is deployed but not listed: its code cannot be loaded: %s", name, exc)
        return False
    return True
