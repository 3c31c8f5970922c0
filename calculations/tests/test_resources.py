"""Resource requests (issue 21): what a calculation asks for, within its tool's and the deployment's
limits; the grant in provenance and the API, never in the cache key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from calculations.actions import check_rerun_calculation, do_create_step, do_start_calculation
from calculations.errors import InvalidInput
from calculations.models import Calculation
from calculations.resources import attempt_resources, grant_resources, most_asked
from calculations.tests.crate_runs import GENOME, finish_calculation, finished_tes_task, started_workflow_run, upload
from calculations.tools import Resources, ToolSpec, get_registry, get_tool
from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]
OBABEL_OWN = {"cpus": 1, "memory_mb": 1024, "time_limit_seconds": 600, "gpus": 0}


@pytest.fixture
def molecule(uploaded: Upload) -> str:
    return uploaded("m.smi", b"CCO\n")


@pytest.fixture
def gpu_tool(monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolSpec]:
    """obabel as if it declared a GPU (a deep-learning tool would)."""
    spec = get_tool("obabel")
    gpu = replace(spec, resources=replace(spec.resources, max_gpus=2))
    monkeypatch.setitem(get_registry(), "obabel", gpu)
    yield gpu


def submit(client: ApiClient, file_id: str, resources: Any = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"inputs": {"molecules": file_id}, "params": {}, "use_cache": False, **extra}
    if resources is not None:
        body["resources"] = resources
    return client.post("/tools/obabel/calculations", body)


def refusal(response: Any) -> str:
    assert response.status_code == 422, response.content
    return str(response.json()["detail"])


# --- the request and its limits ------------------------------------------------------------


def test_a_request_without_resources_is_given_the_tools_own_values(alice: ApiClient, molecule: str) -> None:
    calc = submit(alice, molecule).json()
    assert calc["resources"] == OBABEL_OWN
    assert alice.get(f"/calculations/{calc['id']}").json()["provenance"]["resources"] == OBABEL_OWN


def test_a_request_is_given_what_it_asks_and_the_tools_values_for_the_rest(alice: ApiClient, molecule: str) -> None:
    asked = submit(alice, molecule, {"memory_mb": 4096, "time_limit_seconds": 120})
    assert asked.status_code == 202, asked.content
    shown = alice.get(f"/calculations/{asked.json()['id']}").json()
    assert shown["resources"] == {"cpus": 1, "memory_mb": 4096, "time_limit_seconds": 120, "gpus": 0}
    # the generic route takes the same field
    generic = alice.post(
        "/tools/obabel/calculations",
        {"inputs": {"molecules": molecule}, "resources": {"memory_mb": 512}, "use_cache": False},
    )
    assert generic.status_code == 202 and generic.json()["resources"]["memory_mb"] == 512


def test_more_than_the_tool_allows_is_a_422_naming_the_tools_maximum(alice: ApiClient, molecule: str) -> None:
    assert refusal(submit(alice, molecule, {"cpus": 2})) == (
        "resources.cpus: 2 is above the maximum of 1 that tool 'obabel' allows"
    )
    assert "maximum of 8192 that tool 'obabel' allows" in refusal(submit(alice, molecule, {"memory_mb": 9000}))
    assert refusal(submit(alice, molecule, {"gpus": 1})) == (
        "resources.gpus: 1 is above the maximum of 0 that tool 'obabel' allows (it uses no GPU)"
    )
    assert not Calculation.objects.exists()


def test_more_than_the_deployment_allows_is_a_422_naming_its_setting(
    alice: ApiClient, molecule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().resources, "max_time_limit_seconds", 300)
    assert refusal(submit(alice, molecule, {"time_limit_seconds": 301})) == (
        "resources.time_limit_seconds: 301 is above this deployment's maximum of 300 "
        "(EMGAPI_RESOURCES__MAX_TIME_LIMIT_SECONDS)"
    )


@pytest.mark.parametrize(
    "resources", [{"memory_mb": 0}, {"cpus": -1}, {"gpus": -1}, {"memory": 4096}, {"cpus": "lots"}]
)
def test_a_value_that_is_no_resource_is_a_422(alice: ApiClient, molecule: str, resources: dict[str, Any]) -> None:
    assert submit(alice, molecule, resources).status_code == 422


@pytest.mark.django_db
def test_gpus_only_on_a_backend_that_has_them(gpu_tool: ToolSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    def grant(backend: str) -> dict[str, int]:
        return grant_resources(gpu_tool.name, gpu_tool.resources, {"gpus": 2}, backend=backend)

    with pytest.raises(InvalidInput, match="the local backend cannot give GPUs"):
        grant("local")
    for backend in ("container", "slurm"):
        setting = f"EMGAPI_{backend.upper()}__GPUS_AVAILABLE is false"
        with pytest.raises(InvalidInput, match=f"backend '{backend}' has no GPUs on this deployment \\({setting}\\)"):
            grant(backend)
        monkeypatch.setattr(getattr(get_settings(), backend), "gpus_available", True)
        assert grant(backend)["gpus"] == 2
    with pytest.raises(InvalidInput, match="above the maximum of 2 that tool 'obabel' allows"):
        grant_resources(gpu_tool.name, gpu_tool.resources, {"gpus": 3}, backend="slurm")


def test_a_gpu_request_on_the_local_backend_is_a_422_that_says_so(
    alice: ApiClient, molecule: str, gpu_tool: ToolSpec
) -> None:
    assert refusal(submit(alice, molecule, {"gpus": 1}, backend="local")) == (
        "resources.gpus: the local backend cannot give GPUs; ask for backend container or slurm"
    )


def test_a_pipeline_step_asks_as_a_calculation_does(alice: ApiClient, molecule: str, workflow_catalogue: Any) -> None:
    step = {"tool": "obabel", "inputs": {"molecules": f"file:{molecule}"}, "resources": {"cpus": 4}}
    refused = alice.post("/workflows/pipeline/runs", {"params": {"steps": {"convert": step}}})
    assert refusal(refused) == "steps.convert.resources.cpus: 4 is above the maximum of 1 that tool 'obabel' allows"
    step["resources"] = {"memory_mb": 2048}
    step["retry"] = {"max_memory_mb": 1024}
    refused = alice.post("/workflows/pipeline/runs", {"params": {"steps": {"convert": step}}})
    assert refusal(refused) == "steps.convert.retry.max_memory_mb: 1024 is below what the run is given (2048 MB)"
    step["retry"] = {"max_memory_mb": 4096, "on_time_limit": False}
    assert alice.post("/workflows/pipeline/runs", {"params": {"steps": {"convert": step}}}).status_code == 202


def test_a_step_of_a_running_pipeline_is_given_what_it_asks(alice_id: int, workflow_catalogue: Any) -> None:
    genome = upload(alice_id, "genome.fna", GENOME)
    step = {"tool": "prodigal", "inputs": {"contigs": f"file:{genome.id}"}, "resources": {"memory_mb": 2048}}
    run = started_workflow_run(alice_id, "pipeline", {"steps": {"genes": step}})
    # what the flow's run_tool(..., resources=step.resources) asks the platform for
    calc = do_create_step(
        run.id, 1, step="genes", index=0, tool="prodigal", inputs={"contigs": genome.id}, params={},
        resources={"memory_mb": 2048},
    )  # fmt: skip
    assert calc.provenance["resources"]["memory_mb"] == 2048


# --- provenance and the cache ----------------------------------------------------------------


def test_each_attempt_records_what_it_was_given(alice: ApiClient, molecule: str) -> None:
    calc_id = submit(alice, molecule, {"memory_mb": 2048}).json()["id"]
    do_start_calculation(calc_id, 1, flow_run_id=None, backend="local", host="h", workdir="/w")
    attempt = alice.get(f"/calculations/{calc_id}").json()["provenance"]["attempts"][0]
    assert attempt["resources"] == {**OBABEL_OWN, "memory_mb": 2048}


def test_what_an_attempt_is_given_is_its_own_record_else_the_calculations_else_the_tools() -> None:
    own = Resources(cpus=1, memory_mb=1024, time_limit_seconds=60)
    calc_grant = {"cpus": 1, "memory_mb": 2048, "time_limit_seconds": 60, "gpus": 0}
    second = {**calc_grant, "memory_mb": 4096}  # (a retry with more memory records its own)
    provenance = {"resources": calc_grant, "attempts": [{"attempt": 2, "resources": second}]}
    assert attempt_resources(own, provenance, 1) == calc_grant
    assert attempt_resources(own, provenance, 2) == second
    # a calculation made before grants were kept: the tool's own values, as then
    assert attempt_resources(own, {"attempts": []}, 1) == {
        "cpus": 1,
        "memory_mb": 1024,
        "time_limit_seconds": 60,
        "gpus": 0,
    }


def test_requests_that_differ_only_in_resources_share_the_cache(alice: ApiClient, molecule: str) -> None:
    first = submit(alice, molecule, {"memory_mb": 2048}, use_cache=True).json()
    finish_calculation(Calculation.objects.get(id=first["id"]))
    again = submit(alice, molecule, {"memory_mb": 4096, "time_limit_seconds": 60}, use_cache=True)
    assert again.status_code == 200, again.content
    hit = again.json()
    assert hit["cache_hit"] and hit["cached_from"] == first["id"] and hit["state"] == "COMPLETE"
    # what it shows is what produced its outputs: the first calculation's grant
    assert hit["resources"]["memory_mb"] == 2048


def test_an_operators_rerun_is_given_what_the_calculation_was(alice: ApiClient, molecule: str) -> None:
    failed = submit(alice, molecule, {"memory_mb": 3072}).json()
    finish_calculation(Calculation.objects.get(id=failed["id"]), state="EXECUTOR_ERROR")
    again = check_rerun_calculation(failed["id"], actor="staff:ops")
    assert again.provenance["resources"]["memory_mb"] == 3072


def test_the_tool_shows_its_own_values_and_the_most_a_request_may_ask(alice: ApiClient) -> None:
    resources = alice.get("/tools/obabel").json()["resources"]
    assert resources == {
        **OBABEL_OWN,
        "max_cpus": 1,
        "max_memory_mb": 8192,
        "max_time_limit_seconds": 7 * 86400,  # the tool sets none: the deployment's
        "max_gpus": 0,
    }


def test_a_tes_tasks_grant_is_kept_as_a_tools_is(alice_id: int) -> None:
    task = finished_tes_task(alice_id)
    # what its executors were given (resources.cpu_cores, ram_gb, backend_parameters.time_limit_seconds)
    assert task.provenance["resources"] == {"cpus": 1, "memory_mb": 1024, "time_limit_seconds": 60, "gpus": 0}
    assert task.provenance["attempts"][0]["resources"] == task.provenance["resources"]


# --- retry with more (the plan is fixed at submission; the policy applies it: test_retries.py) ----


def test_a_run_is_retried_with_twice_its_memory_and_time_up_to_the_most_it_may_have(
    alice: ApiClient, molecule: str
) -> None:
    most = most_asked(get_tool("obabel").resources)  # the tool's maximum, or the deployment's if lower
    calc = submit(alice, molecule).json()
    plan = alice.get(f"/calculations/{calc['id']}").json()["provenance"]["escalation"]
    assert plan == {
        "memory_mb": {"factor": 2, "cap": most["max_memory_mb"]},
        "time_limit_seconds": {"factor": 2, "cap": most["max_time_limit_seconds"]},
    }
    mine = submit(alice, molecule, retry={"on_time_limit": False, "max_memory_mb": 4096}).json()
    plan = alice.get(f"/calculations/{mine['id']}").json()["provenance"]["escalation"]
    assert plan == {"memory_mb": {"factor": 2, "cap": 4096}}


def test_a_retry_cap_outside_what_the_run_may_have_is_refused_naming_it(alice: ApiClient, molecule: str) -> None:
    most = most_asked(get_tool("obabel").resources)["max_memory_mb"]
    above = refusal(submit(alice, molecule, retry={"max_memory_mb": most + 1}))
    assert above == f"retry.max_memory_mb: {most + 1} is above the most a run may be given here ({most} MB)"
    below = refusal(submit(alice, molecule, {"memory_mb": 2048}, retry={"max_memory_mb": 1024}))
    assert below == "retry.max_memory_mb: 1024 is below what the run is given (2048 MB)"
    assert "retry.on_om" in refusal(submit(alice, molecule, retry={"on_om": False}))  # misspelled: never ignored


def test_a_retry_from_the_sdk_is_checked_as_the_apis_is(alice_id: int) -> None:
    """A flow's `run_tool(..., retry=…)` reaches the action as a dict: a misspelled key or a wrong
    type is refused naming it (the step then fails saying so), never ignored or a crash."""
    from calculations.actions import check_create_calculation

    molecules = upload(alice_id, "m.smi", b"CCO\n")
    for retry, named in (({"on_oom_": False}, "retry.on_oom_"), ({"max_memory_mb": "lots"}, "retry.max_memory_mb")):
        with pytest.raises(InvalidInput, match=named):
            check_create_calculation(alice_id, "obabel", inputs={"molecules": molecules.id}, params={}, retry=retry)
