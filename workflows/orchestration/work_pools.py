"""The work pools the platform's flows run on: the calculation pool, of the calculation worker's own
type (its flow runs execute in the worker's event loop: `workflows/worker/`), the Docker pool, served
by Prefect's own Docker worker (a container of the platform's image per flow run), and the Kubernetes
pool, served by Prefect's Kubernetes worker (a Job of the platform's image per flow run, in the
namespace of `deployment/kubernetes/`)."""

from __future__ import annotations

import copy
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

CALCULATION_POOL_TYPE = "emgapi-in-process"


async def ensure_calculation_work_pool(client: PrefectClient, name: str) -> None:
    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=CALCULATION_POOL_TYPE,
                description="Calculations, executed in-process by `task worker` (workflows/worker/).",
            )
        )
    except ObjectAlreadyExists:
        pass


async def ensure_docker_work_pool(client: PrefectClient, name: str) -> None:
    """The Docker work pool, with prefect-docker's job template (`task worker-docker` serves it)."""
    # prefect-docker: a heavy import (~1 s) that only the Docker pool needs, not the calculation worker
    from prefect_docker.worker import DockerWorker

    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=DockerWorker.type,
                base_job_template=DockerWorker.get_default_base_job_template(),
                description="Workflows that may block (sync flows): a container of the platform's image per run.",
            )
        )
    except ObjectAlreadyExists:
        pass


# What every Kubernetes-pool Job's pod gets from deployment/kubernetes/: the platform's settings (the
# generators' unhashed copies, as a Job outlives no rollout), the data volume, and the restricted
# security context of the platform's other pods.
FLOW_RUN_CONFIG_MAP = "emgapi-flow-run-config"
FLOW_RUN_SECRET = "emgapi-flow-run-secrets"
DATA_CLAIM = "emgapi-data"
RUN_AS = 10001
FLOW_RUN_POD_LABELS = {
    "app.kubernetes.io/name": "emgapi",
    "app.kubernetes.io/component": "flow-run",
    "emgapi.io/database-client": "true",
    "emgapi.io/prefect-client": "true",
}


def kubernetes_base_job_template() -> dict[str, Any]:
    """prefect-kubernetes' default job template, with the settings, the data volume and the security
    context of the platform's pods added (variables `config_map`, `secret`, `data_claim`, each with
    the manifests' name as its default). Its pod spec keeps `completions` and `parallelism`, which
    are a Job's fields, not a pod's: prefect-kubernetes refuses a template without them, and the API
    server drops them (with a warning)."""
    from prefect_kubernetes.worker import KubernetesWorker

    template: dict[str, Any] = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    pod_template = template["job_configuration"]["job_manifest"]["spec"]["template"]
    # the labels the manifests' NetworkPolicies let reach the database and the Prefect server
    pod_template["metadata"] = {"labels": dict(FLOW_RUN_POD_LABELS)}
    pod = pod_template["spec"]
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["automountServiceAccountToken"] = False
    pod["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "{{ data_claim }}"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    container = pod["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "{{ config_map }}"}}, {"secretRef": {"name": "{{ secret }}"}}]
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}]
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    properties = template["variables"]["properties"]
    # a flow run's pod only drives its steps (each runs on the calculation worker): a small, bounded
    # share of a node, its Job removed an hour after it ends; the pool's form in the dashboard changes these
    for name, default in (
        ("cpu_request", "100m"),
        ("cpu_limit", "1"),
        ("memory_request", "256Mi"),
        ("memory_limit", "1Gi"),
        ("finished_job_ttl", 3600),
        ("namespace", "emgapi"),
    ):
        properties[name]["default"] = default
    for name, default, description in (
        ("config_map", FLOW_RUN_CONFIG_MAP, "ConfigMap of the platform's settings, as environment variables."),
        ("secret", FLOW_RUN_SECRET, "Secret of the platform's credentials, as environment variables."),
        ("data_claim", DATA_CLAIM, "PersistentVolumeClaim mounted at /data (the platform's data directory)."),
    ):
        properties[name] = {"type": "string", "default": default, "title": name, "description": description}
    return template


async def ensure_kubernetes_work_pool(client: PrefectClient, name: str) -> None:
    """The Kubernetes work pool, with the job template above (`python -m workflows.kubernetes_worker`
    serves it, in the cluster: deployment/kubernetes/)."""
    from prefect_kubernetes.worker import KubernetesWorker

    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=KubernetesWorker.type,
                base_job_template=kubernetes_base_job_template(),
                description="Workflows run as Kubernetes Jobs: a pod of the platform's image per run.",
            )
        )
    except ObjectAlreadyExists:
        pass
