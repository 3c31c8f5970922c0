"""Flows registered as deployments (`task deploy-flow FLOW=<name|all> [FILE=<file>] [POOL=docker|kubernetes]`,
whose command is `workflows/deploy.py`).

A flow of your own lives in `workflows/flows/<name>.py` as the function `<name>` (or FILE=<file>
FLOW=<function> when they differ, as in emgapi-v2); `FLOW=all` deploys every flow there. Each is
deployed under its flow's name and tagged as a workflow users may launch (POST
/api/v2/workflows/<flow name>/runs); the platform's own flows (run-calculation,
reconcile-calculations) are deployed untagged. The calculation work pool runs flows in the worker's
event loop, so only async flows go there: a sync one would stall every calculation the worker runs.
Such a flow goes to the Docker work pool (POOL=docker), served by Prefect's own Docker worker
(prefect-docker, `task worker-docker`): each of its runs gets a container of the platform's image
(`task images -- --app`), whose steps the calculation worker runs (`container_runner.py`). On
Kubernetes (`deployment/kubernetes/`), POOL=kubernetes does the same with a Job per flow run, served by
Prefect's Kubernetes worker (prefect-kubernetes, `python -m workflows.kubernetes_worker`).

An ops flow's deployment records the sha256 of its file as its version (`flow_code.py`): the worker
runs the code deployed last, and refuses a file that differs. `task undeploy-flow FLOW=<name>`
removes a deployment, never one of the platform's own.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
from prefect.deployments.runner import EntrypointType

import workflows.flows
from emgapiv2.config import BASE_DIR, get_settings
from workflows import flow_code
from workflows.flows.reconcile_calculations import reconcile_calculations_flow
from workflows.flows.run_calculation import run_calculation_flow
from workflows.flows.tools import TOOL_FLOWS
from workflows.orchestration.catalogue import WORKFLOW_TAG
from workflows.orchestration.work_pools import (
    ensure_calculation_work_pool,
    ensure_docker_work_pool,
    ensure_kubernetes_work_pool,
)

INTERNAL = ("run-calculation", "reconcile-calculations")
POOLS = ("calculations", "docker", "kubernetes")
# the pools whose flow runs each get a container of their own: sync flows may block there
CONTAINER_POOLS = ("docker", "kubernetes")
FLOWS_PACKAGE = "workflows.flows"
# the platform's own flows' modules: part of the worker's code (upgraded by a restart), never undeployed
PLATFORM_MODULES = ("run_calculation", "reconcile_calculations", "tools", "pipeline")


class DeployError(Exception):
    """A flow that cannot be deployed as asked; the message says why and what to do."""


@dataclass
class Deployable:
    flow: Any  # a prefect Flow
    options: dict[str, Any] = field(default_factory=dict)
    workflow: bool = True  # users may launch it through the API
    version: str | None = None  # an ops flow's: its file's sha256 (the platform's own: Prefect's default)


def _internal() -> dict[str, Deployable]:
    # (unscheduled: every worker runs the reconciler as a service; this is for running it by hand)
    internal = {
        "run-calculation": Deployable(run_calculation_flow, workflow=False),
        "reconcile-calculations": Deployable(reconcile_calculations_flow, workflow=False),
    }
    # each tool, launched from the dashboard with its own form (as the operator account)
    return internal | {flow.name: Deployable(flow, workflow=False) for flow in TOOL_FLOWS.values()}


def _module_flows(module_name: str) -> tuple[dict[str, Flow[Any, Any]], str | None]:
    """The flows a module defines, by function name, and the version to deploy them with: an ops
    flow's module is read afresh from its file (the bytes whose hash is its version), the platform's
    own is imported."""
    if module_name.rpartition(".")[2] in PLATFORM_MODULES:
        module, version = importlib.import_module(module_name), None
    else:
        module, version = flow_code.load_module(module_name)
    flows = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, Flow) and getattr(value.fn, "__module__", None) == module.__name__
    }
    return flows, version


def find(name: str, file: str | None = None) -> Deployable:
    """FLOW=<name>: an internal flow, or the function `name` in workflows/flows/<file or name>.py."""
    internal = _internal()
    if name in internal:
        return internal[name]
    module = Path(file or name).stem.replace("-", "_")
    if not (Path(workflows.flows.__path__[0]) / f"{module}.py").is_file():
        raise DeployError(f"no flow file workflows/flows/{module}.py")
    try:
        flows, version = _module_flows(f"{FLOWS_PACKAGE}.{module}")
    except flow_code.FlowCodeError as exc:
        raise DeployError(str(exc)) from None
    function = name.replace("-", "_")
    if function not in flows:
        known = ", ".join(sorted(flows)) or "none"
        raise DeployError(f"workflows/flows/{module}.py has no flow function {function!r} (its flows: {known})")
    return Deployable(flows[function], version=version)


def find_all() -> dict[str, Deployable]:
    found = dict(_internal())
    internal_modules = {"run_calculation", "reconcile_calculations", "tools"}
    for module in pkgutil.iter_modules(workflows.flows.__path__):
        if module.name in internal_modules or module.name.startswith("_"):
            continue
        try:
            flows, version = _module_flows(f"{FLOWS_PACKAGE}.{module.name}")
        except flow_code.FlowCodeError as exc:
            raise DeployError(str(exc)) from None
        for function, flow in flows.items():
            found[f"{module.name}:{function}"] = Deployable(flow, version=version)
    return found


def check_pool(deployable: Deployable, pool: str) -> None:
    """The in-process pool takes async flows only; a sync one belongs on the Docker or Kubernetes pool."""
    if pool not in CONTAINER_POOLS and not deployable.flow.isasync:
        raise DeployError(
            f"flow {deployable.flow.name!r} is synchronous: the calculation worker runs flows in its event loop, "
            "where it would stall every other calculation. Make it `async def`, or deploy it to the Docker work "
            f"pool, whose runs each get a container: task deploy-flow FLOW={deployable.flow.fn.__name__} POOL=docker"
        )


def docker_job_variables() -> dict[str, Any]:
    """What each Docker-pool container gets: the platform's image, the deployer's EMGAPI_* settings
    (the database and storage it shares with the calculation worker; they are stored with the
    deployment, behind Prefect's credentials), the data directory at the same path, and, unless the
    image carries the code, this checkout (read-only) as its working directory."""
    settings = get_settings()
    env = {name: value for name, value in os.environ.items() if name.startswith("EMGAPI_")}
    env |= {
        "EMGAPI_DATA_DIR": str(settings.data_dir),
        "EMGAPI_TOOL_PACKAGES": json.dumps(settings.tool_packages),
        "DJANGO_SETTINGS_MODULE": "emgapiv2.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    volumes = list(settings.workflow.docker_volumes) or [f"{settings.data_dir}:{settings.data_dir}"]
    if not settings.workflow.docker_volumes and not settings.blob_root.is_relative_to(settings.data_dir):
        volumes.append(f"{settings.blob_root}:{settings.blob_root}")
    create: dict[str, Any] = {}
    mount = settings.workflow.docker_mount_source
    if mount:
        volumes.append(f"{BASE_DIR}:{BASE_DIR}:ro")
        create["working_dir"] = str(BASE_DIR)
        env["PYTHONPATH"] = str(BASE_DIR)
    return {
        "image": settings.workflow.docker_image,
        "image_pull_policy": "Never",  # built locally (task images -- --app): there is no registry
        "network_mode": settings.workflow.docker_network,
        "volumes": volumes,
        "env": env,
        # -P: the checkout on PYTHONPATH comes first, never the image's own copy of the code (/app)
        "command": "python -P -m workflows.container_runner" if mount else "python -m workflows.container_runner",
        "auto_remove": True,
        "container_create_kwargs": create,
    }


def kubernetes_job_variables() -> dict[str, Any]:
    """What each Kubernetes-pool Job gets beyond the pool's template (`work_pools.py`: the settings
    from the manifests' ConfigMap and Secret, the data volume, the security context): the platform's
    image, which carries the code, and the platform's namespace. No setting is stored with the
    deployment: the Job reads the cluster's own, as the API and the worker do."""
    settings = get_settings()
    return {
        "image": settings.workflow.kubernetes_image,
        "namespace": settings.workflow.kubernetes_namespace,
        "command": "python -m workflows.container_runner",
    }


def _job_variables(pool: str) -> dict[str, Any] | None:
    if pool == "docker":
        return docker_job_variables()
    if pool == "kubernetes":
        return kubernetes_job_variables()
    return None


def _work_pool_name(pool: str) -> str:
    prefect = get_settings().prefect
    return {"docker": prefect.docker_work_pool, "kubernetes": prefect.kubernetes_work_pool}.get(pool, prefect.work_pool)


async def _drop_schedules(deployment_id: UUID) -> None:
    async with get_client() as client:
        for schedule in await client.read_deployment_schedules(deployment_id):
            await client.delete_deployment_schedule(deployment_id, schedule.id)


def deploy(names: list[str], *, file: str | None = None, pool: str = "calculations") -> list[str]:
    """Create or update the deployments; return their full names."""
    if pool not in POOLS:
        raise DeployError(f"unknown pool {pool!r}: 'calculations' (the default), 'docker' or 'kubernetes'")
    own_container = pool in CONTAINER_POOLS  # a container per flow run: users' workflows only, sync or async
    work_pool = _work_pool_name(pool)
    if names == ["all"]:  # every flow this pool can run; the others are named, not refused
        chosen = {}
        for name, deployable in find_all().items():
            if own_container and not deployable.workflow:
                continue
            if not own_container and not deployable.flow.isasync:
                function = name.split(":")[-1]
                print(f"skipped {deployable.flow.name}: a sync flow (task deploy-flow FLOW={function} POOL=docker)")
                continue
            chosen[name] = deployable
    else:
        chosen = {name: find(name, file) for name in names}
    for deployable in chosen.values():
        check_pool(deployable, pool)
        if own_container and not deployable.workflow:
            raise DeployError(f"{deployable.flow.name} is the platform's own: it runs on the calculation work pool")

    async def create_pool() -> None:
        async with get_client() as client:
            if pool == "docker":
                await ensure_docker_work_pool(client, work_pool)
            elif pool == "kubernetes":
                await ensure_kubernetes_work_pool(client, work_pool)
            else:
                await ensure_calculation_work_pool(client, work_pool)

    asyncio.run(create_pool())
    deployed = []
    for deployable in chosen.values():
        flow = deployable.flow
        deployment = flow.to_deployment(
            name=flow.name,
            work_pool_name=work_pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=[WORKFLOW_TAG] if deployable.workflow else [],
            description=flow.description or "",
            job_variables=_job_variables(pool),
            version=deployable.version,
            **deployable.options,
        )
        deployment_id = deployment.apply(work_pool_name=work_pool)
        if not deployable.options.get("interval"):
            asyncio.run(_drop_schedules(deployment_id))  # one an earlier version of the platform gave it
        deployed.append(f"{flow.name}/{flow.name}")
    return deployed


def platform_flow_names() -> set[str]:
    """The flows the platform itself needs (calculations, pipelines, the tools' forms)."""
    return set(_internal()) | {"pipeline"}


def undeploy(name: str) -> str:
    """Remove the deployment of the flow `name` (its flow name, or its function's); return its full name."""
    platform = platform_flow_names()

    def refuse(flow_name: str) -> None:
        if flow_name in platform:
            raise DeployError(f"{flow_name} is one of the platform's own flows: it cannot be undeployed")

    refuse(name)
    refuse(name.replace("_", "-"))

    async def remove() -> str:
        async with get_client() as client:
            deployments = await client.read_deployments(
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[_work_pool_name(pool) for pool in POOLS]))
            )
            matches = [
                d
                for d in deployments
                if name in (d.name, d.name.replace("-", "_")) or (d.entrypoint or "").rpartition(".")[2] == name
            ]
            if not matches:
                known = ", ".join(sorted(d.name for d in deployments if d.name not in platform)) or "none"
                raise DeployError(f"no deployment of a flow named {name!r} (deployed flows of your own: {known})")
            if len(matches) > 1:
                raise DeployError(f"{name!r} names several deployments: {', '.join(sorted(d.name for d in matches))}")
            deployment = matches[0]
            refuse(deployment.name)
            module = (deployment.entrypoint or "").rpartition(".")[0]
            if module.removeprefix(FLOWS_PACKAGE + ".") in PLATFORM_MODULES:
                raise DeployError(f"{deployment.name} is one of the platform's own flows: it cannot be undeployed")
            await client.delete_deployment(deployment.id)
            return f"{deployment.name}/{deployment.name}"

    return asyncio.run(remove())
