"""The Kubernetes work pool's job template (`task deploy-flow FLOW=<name> POOL=kubernetes`), rendered as
Prefect's Kubernetes worker renders it for a flow run, and the Job it makes checked against the
Kubernetes schemas offline (kubernetes-validate): no cluster runs here."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import kubernetes_validate
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from emgapiv2.config import get_settings
from workflows.orchestration.deployments import DeployError, deploy, kubernetes_job_variables
from workflows.orchestration.work_pools import kubernetes_base_job_template


def _without_nulls(value: Any) -> Any:
    """What the API server stores of a manifest: a field set to null is a field not set."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def render_job(job_variables: dict[str, Any]) -> dict[str, Any]:
    """The Job the Kubernetes worker submits for a flow run of a deployment with these job variables."""
    template = kubernetes_base_job_template()
    values = {name: spec["default"] for name, spec in template["variables"]["properties"].items() if "default" in spec}
    values |= job_variables

    async def configure() -> KubernetesWorkerJobConfiguration:
        return await KubernetesWorkerJobConfiguration.from_template_and_values(template, values)

    configuration = asyncio.run(configure())
    configuration.prepare_for_flow_run(FlowRun(id=uuid4(), name="brave-otter", flow_id=uuid4()))
    job: dict[str, Any] = _without_nulls(configuration.job_manifest)
    return job


def test_a_flow_runs_job_is_a_valid_locked_down_job_of_the_platforms_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().workflow, "kubernetes_namespace", "emgapi-dev")
    job = render_job(kubernetes_job_variables())
    assert kubernetes_validate.validate(job, "1.32") == "1.32"
    # strictly too (an unknown field is an error), less the two fields prefect-kubernetes requires in the
    # pod spec although they are a Job's, which the API server drops
    pod = job["spec"]["template"]["spec"]
    strict = {**job, "spec": {**job["spec"], "template": {**job["spec"]["template"], "spec": dict(pod)}}}
    for misplaced in ("completions", "parallelism"):
        del strict["spec"]["template"]["spec"][misplaced]
    kubernetes_validate.validate(strict, "1.32", strict=True)

    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "emgapi-dev"
    (container,) = pod["containers"]
    assert container["image"] == "emgapi/app:latest"
    assert container["args"] == ["python", "-m", "workflows.container_runner"]
    # the settings of the manifests (deployment/kubernetes/base), not the deployer's, and the data volume
    assert container["envFrom"] == [
        {"configMapRef": {"name": "emgapi-flow-run-config"}},
        {"secretRef": {"name": "emgapi-flow-run-secrets"}},
    ]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert "PREFECT__FLOW_RUN_ID" in env and not any(name.startswith("EMGAPI_") for name in env)
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "emgapi-data"}} in pod["volumes"]
    assert (
        pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    # the labels the NetworkPolicies admit to the database and the Prefect server
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["emgapi.io/database-client"] == labels["emgapi.io/prefect-client"] == "true"
    assert labels["prefect.io/flow-run-name"] == "brave-otter"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600 and job["spec"]["backoffLimit"] == 0


def test_an_operator_may_change_the_jobs_resources_in_the_pool() -> None:
    job = render_job(kubernetes_job_variables() | {"cpu_limit": "4", "memory_limit": "16Gi"})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    kubernetes_validate.validate(job, "1.32")


def test_an_unknown_pool_is_refused_naming_the_pools() -> None:
    with pytest.raises(DeployError, match="'calculations' .*'docker' or 'kubernetes'"):
        deploy(["all"], pool="lambda")
