"""The Kubernetes manifests (deployment/kubernetes/), checked short of a cluster, which none of our
machines can run: every overlay renders with `kubectl kustomize` (scripts/kubectl.sh installs it), every
object it renders is valid against the Kubernetes schemas (kubernetes-validate, strict: an unknown field
is an error), the images are the compose stack's, the pods are locked down, the probes name real routes,
and only the database's clients may reach it. Each overlay is rendered once, from a copy of the tree
with the secrets that deployment/kubernetes/secrets.sh writes for it (never in the repository)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.urls import resolve

from emgapiv2.config import BASE_DIR

KUBERNETES_DIR = BASE_DIR / "deployment" / "kubernetes"
OVERLAYS = ("dev", "production")
# the oldest Kubernetes release still supported upstream when these were written, and kubectl's own
KUBERNETES_VERSION = "1.32"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# the one pod that starts as root: the development PostgreSQL's entry point hands it the data directory
ROOT_PODS = {("dev", "postgres")}


def kubectl() -> str:
    """The kubectl scripts/bootstrap.sh provides: the project's own, else the machine's."""
    own = BASE_DIR / ".venv" / "bin" / "kubectl"
    found = str(own) if own.is_file() else shutil.which("kubectl")
    assert found, "no kubectl: run scripts/bootstrap.sh (scripts/kubectl.sh installs one)"
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, as `kubectl kustomize` renders them with the secrets secrets.sh writes."""
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, tree, ignore=shutil.ignore_patterns("secrets"))
    objects = {}
    for overlay in OVERLAYS:
        subprocess.run([str(tree / "secrets.sh"), overlay], check=True, capture_output=True, timeout=60)
        done = subprocess.run(
            [kubectl(), "kustomize", str(tree / "overlays" / overlay)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"kubectl kustomize overlays/{overlay}: {done.stderr}"
        objects[overlay] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return objects


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj["spec"]["template"] for obj in objects if obj["kind"] in WORKLOADS}


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """`kubectl kustomize overlays/<overlay> | kubernetes-validate --strict`: 0 errors."""
    errors = []
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)
    kinds = {obj["kind"] for obj in rendered[overlay]}
    assert {"Deployment", "Service", "Ingress", "NetworkPolicy", "Secret", "ConfigMap"} <= kinds
    deployments = {obj["metadata"]["name"] for obj in rendered[overlay] if obj["kind"] == "Deployment"}
    assert deployments == {"api", "prefect", "worker", "flow-worker"}
    assert all(obj["metadata"].get("namespace") == ("emgapi-dev" if overlay == "dev" else "emgapi")
               for obj in rendered[overlay] if obj["kind"] != "Namespace")  # fmt: skip


def compose_images() -> set[str]:
    """The images the compose stack (docker-compose.yaml, run by `task stack-test`) builds and runs,
    with their default tag."""
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yaml").read_text())
    images = {service["image"] for service in compose["services"].values() if "image" in service}
    return {re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", image) for image in images}


def test_the_images_are_the_compose_stacks(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The manifests run what the stack test runs: emgapi/app for the platform, emgapi/postgres for dev's
    database, at the stack's tag; so do the flow runs' Jobs (EMGAPI_WORKFLOW__KUBERNETES_IMAGE)."""
    stack = compose_images()
    assert {"emgapi/app:latest", "emgapi/postgres:latest"} <= stack
    for overlay, objects in rendered.items():
        named = {
            container["image"]
            for pod in _pod_specs(objects).values()
            for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
        }
        assert named <= stack, f"overlays/{overlay} names images the compose stack does not run: {named - stack}"
        config = _named(objects, "ConfigMap", "emgapi-flow-run-config")["data"]
        assert config["EMGAPI_WORKFLOW__KUBERNETES_IMAGE"] in stack
    assert "emgapi/postgres:latest" not in {  # production's database is external
        c["image"] for pod in _pod_specs(rendered["production"]).values() for c in pod["spec"]["containers"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down_and_bounded(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Non-root (but dev's PostgreSQL), seccomp RuntimeDefault, no privilege escalation, a read-only root,
    no capabilities, and requests and limits of CPU and memory for every container."""
    for name, pod in _pod_specs(rendered[overlay]).items():
        spec = pod["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        if (overlay, name) not in ROOT_PODS:
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            if (overlay, name) not in ROOT_PODS:
                assert "add" not in context["capabilities"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"
    namespace = _named(rendered[overlay], "Namespace", "emgapi-dev" if overlay == "dev" else "emgapi")
    expected = "baseline" if overlay == "dev" else "restricted"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == expected


def test_probes_split_liveness_from_readiness_on_real_routes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The API is alive while it answers at all, ready while its dependencies answer: two routes that exist
    (an outage of the database must not restart every pod); so is the Prefect server (/api/health,
    /api/ready: both open without its credentials)."""
    pods = _pod_specs(rendered["production"])
    api = pods["api"]["spec"]["containers"][0]
    live, ready = api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"]
    assert (live, ready) == ("/api/v2/health/live", "/api/v2/health/ready")
    assert resolve(live).url_name == "live" and resolve(ready).url_name == "ready"
    config = _named(rendered["production"], "ConfigMap", "emgapi-flow-run-config")["data"]
    allowed_hosts = yaml.safe_load(config["EMGAPI_ALLOWED_HOSTS"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in api[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in allowed_hosts  # else Django answers the kubelet with a 400
    prefect = pods["prefect"]["spec"]["containers"][0]
    assert prefect["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert prefect["readinessProbe"]["httpGet"]["path"] == "/api/ready"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        if expression["operator"] == "DoesNotExist" and present or expression["operator"] == "Exists" and not present:
            return False
    return True


def test_only_the_api_and_the_workers_reach_the_database(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """dev: the PostgreSQL pod admits, on 5432 only, the pods of the API, the calculation worker, the
    flow runs' Jobs and the Prefect server (its own database), not Prefect's Kubernetes worker; every
    other pod admits nobody by default. production: the pods that are not the database's clients may
    not reach the external database's address."""
    from workflows.orchestration.work_pools import kubernetes_base_job_template

    job_pod = kubernetes_base_job_template()["job_configuration"]["job_manifest"]["spec"]["template"]
    for overlay, objects in rendered.items():
        pods = {name: pod["metadata"]["labels"] for name, pod in _pod_specs(objects).items()}
        pods["flow-run"] = job_pod["metadata"]["labels"]
        policies = {obj["metadata"]["name"]: obj["spec"] for obj in objects if obj["kind"] == "NetworkPolicy"}
        assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
        if overlay == "dev":
            (rule,) = policies["postgres-ingress"]["ingress"]
            assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
            admitted = {name for name, labels in pods.items() if _matches(rule["from"][0]["podSelector"], labels)}
            assert admitted == {"api", "worker", "prefect", "flow-run"}
        else:
            policy = policies["database-clients-only"]
            fenced = {name for name, labels in pods.items() if _matches(policy["podSelector"], labels)}
            assert fenced == {"flow-worker"}
            assert policy["egress"][-1]["to"][0]["ipBlock"]["except"]


def test_no_secret_is_in_the_repository() -> None:
    """Every Secret is generated from an overlay's secrets/*.env, which git ignores and secrets.sh writes."""
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((KUBERNETES_DIR / "overlays" / overlay / "kustomization.yaml").read_text())
        for generator in kustomization["secretGenerator"]:
            assert set(generator) <= {"name", "envs", "options"}, generator  # no literals, no files
            for env_file in generator["envs"]:
                assert env_file.startswith("secrets/")
                path = f"deployment/kubernetes/overlays/{overlay}/{env_file}"
                ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=BASE_DIR, timeout=30)
                assert ignored.returncode == 0, f"{path} is not ignored by git"
    tracked = subprocess.run(
        ["git", "ls-files", "deployment/kubernetes"], cwd=BASE_DIR, capture_output=True, text=True, timeout=30
    ).stdout.split()
    assert not [path for path in tracked if "/secrets/" in path]


def _secret(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = next(obj for obj in objects if obj["kind"] == "Secret" and obj["metadata"]["name"].startswith(name))
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_the_generated_secrets_agree_with_each_other(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """secrets.sh for dev: the database URLs carry the database's password, every Prefect client the
    server's credentials; for production it leaves what only the operator knows marked CHANGE-ME."""
    dev = rendered["dev"]
    app, prefect, postgres = (_secret(dev, name) for name in ("emgapi-secrets", "prefect-secrets", "postgres-secrets"))
    password = postgres["POSTGRES_PASSWORD"]
    assert len(password) >= 32
    assert app["EMGAPI_DB__URL"] == f"postgresql://emgapi:{password}@postgres:5432/emgapi"
    assert prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith(f":{password}@postgres:5432/prefect")
    assert app["PREFECT_API_AUTH_STRING"] == prefect["PREFECT_SERVER_API_AUTH_STRING"]
    assert _secret(dev, "emgapi-flow-run-secrets") == app
    production = _secret(rendered["production"], "emgapi-secrets")
    assert "CHANGE-ME" in production["EMGAPI_DB__URL"] and production["EMGAPI_S3__SECRET_ACCESS_KEY"] == "CHANGE-ME"
    assert "CHANGE-ME" not in production["EMGAPI_SECRET_KEY"] + production["PREFECT_API_AUTH_STRING"]


def test_the_settings_of_the_manifests_are_documented_settings() -> None:
    """Every EMGAPI_* variable the ConfigMaps set is a setting .env.example documents."""
    documented = set(re.findall(r"^#?\s*(EMGAPI_[A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M))
    for config in KUBERNETES_DIR.rglob("config.env"):
        named = set(re.findall(r"^#?\s*(EMGAPI_[A-Z0-9_]+)=", config.read_text(), re.M))
        assert named and named <= documented, f"{config}: {named - documented}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_can_be_scraped_with_the_token_and_only_by_a_labelled_namespace(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Metrics from every worker (issue 22): pods share no data_dir, so the token is a generated
    secret the API and the workers share; the worker listens on its pod's address, on a port that only
    namespaces labelled emgapi.io/metrics-scraper=true may reach."""
    objects = rendered[overlay]
    assert len(_secret(objects, "emgapi-secrets")["EMGAPI_METRICS__TOKEN"]) >= 32
    config = next(
        obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("emgapi-config")
    )
    assert (config["data"]["EMGAPI_METRICS__WORKER_HOST"], config["data"]["EMGAPI_METRICS__WORKER_PORT"]) == (
        "0.0.0.0",
        "9464",
    )
    [worker] = _pod_specs(objects)["worker"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in worker["ports"]
    policy = _named(objects, "NetworkPolicy", "worker-metrics-ingress")["spec"]
    assert policy["ingress"] == [
        {"from": [{"namespaceSelector": {"matchLabels": {"emgapi.io/metrics-scraper": "true"}}}],
         "ports": [{"port": 9464, "protocol": "TCP"}]}
    ]  # fmt: skip
