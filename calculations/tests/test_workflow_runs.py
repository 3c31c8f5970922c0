"""Workflow runs through the API and the actions, without Prefect (flow runs are the integration
tests'): every mistake a submitted pipeline can hold is a 422 that names it, a run counts once
against the quota, and a run's life (start, steps, resume, cancel) goes through guarded transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from calculations import actions
from calculations.actions import do_set_user_quota
from calculations.errors import InvalidTransition
from calculations.models import Calculation, WorkflowRun
from calculations.policies import AttemptEnd
from conftest import ApiClient

Upload = Callable[[str, bytes], str]
pytestmark = pytest.mark.usefixtures("workflow_catalogue")


def submit(client: ApiClient, steps: Any) -> Any:
    return client.post("/workflows/pipeline/runs", {"params": {"steps": steps}})


@pytest.fixture
def files(uploaded: Upload, genome: bytes) -> dict[str, str]:
    return {"genome": uploaded("g.fna", genome), "molecule": uploaded("m.smi", b"CCO\n")}


def _two_steps(genome: str) -> dict[str, Any]:
    return {
        "genes": {"tool": "prodigal", "params": {"mode": "single"}, "inputs": {"contigs": f"file:{genome}"}},
        "hits": {"tool": "hmmsearch", "inputs": {"profile": f"file:{genome}", "sequences": "genes.proteins"}},
    }


def test_the_deployed_workflows_are_listed_with_their_parameter_schema(alice: ApiClient) -> None:
    listed = alice.get("/workflows").json()
    assert [w["name"] for w in listed] == ["pipeline"]
    assert "steps" in listed[0]["parameters_schema"]["properties"]
    assert alice.get("/workflows/nope").status_code == 404


def test_a_valid_pipeline_is_queued_and_shown(alice: ApiClient, files: dict[str, str]) -> None:
    response = submit(alice, _two_steps(files["genome"]))
    assert response.status_code == 202, response.content
    run = response.json()
    assert (run["workflow"], run["state"], run["steps"], run["attempts"]) == ("pipeline", "QUEUED", [], 1)
    assert alice.get("/workflow-runs", state="QUEUED", workflow="pipeline").json()["count"] == 1
    assert alice.get("/workflow-runs", state="COMPLETE").json()["count"] == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s, f: s["genes"].update(tool="prodigl"), "steps.genes.tool: unknown tool 'prodigl'"),
        (lambda s, f: s["hits"]["inputs"].update(sequences="gens.proteins"),
         "steps.hits.inputs.sequences: unknown step 'gens'"),
        (lambda s, f: s["hits"]["inputs"].update(sequences="genes.protein"),
         "steps.hits.inputs.sequences: step 'genes' (prodigal) has no output 'protein'"),
        (lambda s, f: s["genes"]["inputs"].update(contigs="hits.hits"), "steps: a cycle: "),
        (lambda s, f: s["genes"]["params"].update(mode="fast"), "steps.genes.params.mode: Input should be"),
        (lambda s, f: s["genes"]["inputs"].update(contigs=f"file:{uuid4()}"), "steps.genes.inputs.contigs: file "),
        (lambda s, f: s["genes"]["inputs"].update(contigs="my genome"), "is neither 'file:<id>' nor '<step>."),
        (lambda s, f: s["genes"]["inputs"].update(sequences=f"file:{f['genome']}"),
         "steps.genes.inputs.sequences: prodigal has no input 'sequences'"),
        (lambda s, f: s["hits"]["inputs"].pop("profile"), "steps.hits.inputs.profile: missing"),
        (lambda s, f: s["genes"].update(backend="cloud"), "steps.genes.backend:"),
        (lambda s, f: s["genes"].update(tools="x"),
         "params.steps.genes: Additional properties are not allowed ('tools' was unexpected)"),
        (lambda s, f: s.update({"more": {"tool": "obabel", "inputs": {
            "molecules": {"each": [f"file:{f['molecule']}"] * 2}}}, "again": {"tool": "obabel", "inputs": {
            "molecules": {"each": [f"file:{f['molecule']}"] * 3}}}, "both": {"tool": "hmmsearch", "inputs": {
            "profile": "more.molecules", "sequences": "again.molecules"}}}),
         "steps.both: mapped inputs of different lengths"),
    ],
)  # fmt: skip
def test_each_kind_of_mistake_in_a_pipeline_is_a_422_that_names_it(
    alice: ApiClient, files: dict[str, str], change: Callable[[dict[str, Any], dict[str, str]], None], message: str
) -> None:
    steps = _two_steps(files["genome"])
    change(steps, files)
    response = submit(alice, steps)
    assert response.status_code == 422, response.content
    assert message in response.json()["detail"]
    assert WorkflowRun.objects.count() == 0


def test_another_users_file_in_a_pipeline_is_not_found(bob: ApiClient, files: dict[str, str]) -> None:
    response = submit(bob, _two_steps(files["genome"]))
    assert response.status_code == 422 and "not found" in response.json()["detail"]


def test_a_workflow_run_counts_once_against_the_active_quota(alice: ApiClient, files: dict[str, str]) -> None:
    do_set_user_quota("alice", max_active_calculations=1)
    assert submit(alice, _two_steps(files["genome"])).status_code == 202
    refused = submit(alice, _two_steps(files["genome"]))
    assert refused.status_code == 429 and "0 calculations and 1 workflow run queued" in refused.json()["detail"]


def _running_run(alice_id: int) -> WorkflowRun:
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    return actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w1")


def _step(run: WorkflowRun, files: dict[str, str], index: int = 0, attempt: int = 1) -> Calculation:
    return actions.do_create_step(
        run.id, attempt, step="convert", index=index, tool="obabel",
        inputs={"molecules": UUID(files["molecule"])}, params={"output_format": "sdf"}, use_cache=False,
    )  # fmt: skip


def test_steps_are_calculations_outside_the_quota_and_found_again_when_resumed(
    alice: ApiClient, alice_id: int, files: dict[str, str]
) -> None:
    do_set_user_quota("alice", max_active_calculations=1)
    run = _running_run(alice_id)
    steps = [_step(run, files, index) for index in range(3)]  # the run counts once: 3 steps are fine
    assert {s.workflow_run_id for s in steps} == {run.id} and [s.step_index for s in steps] == [0, 1, 2]
    shown = alice.get(f"/calculations/{steps[1].id}").json()
    assert (shown["workflow_run"], shown["step"], shown["step_index"]) == (str(run.id), "convert", 1)

    resumed = actions.do_end_workflow_run(run.id, 1, AttemptEnd.WORKER_LOST, message="worker lost")
    assert (resumed.state, resumed.attempt, resumed.flow_run_id) == ("QUEUED", 2, None)
    actions.do_start_workflow_run(run.id, 2, flow_run_id=uuid4(), worker="w2")
    assert _step(run, files, 1, attempt=2).id == steps[1].id  # the same step, not a second one
    with pytest.raises(InvalidTransition):
        _step(run, files, 3, attempt=1)  # the old attempt may start nothing
    assert [s["index"] for s in alice.get(f"/workflow-runs/{run.id}").json()["steps"]] == [0, 1, 2]


def test_cancel_cancels_every_step_and_no_new_step_starts(
    alice: ApiClient, alice_id: int, files: dict[str, str]
) -> None:
    run = _running_run(alice_id)
    steps = [_step(run, files, index) for index in range(2)]
    response = alice.post(f"/workflow-runs/{run.id}/cancel")
    assert response.status_code == 202 and response.json()["state"] == "CANCELING"
    assert set(Calculation.objects.filter(id__in=[s.id for s in steps]).values_list("state", flat=True)) == {"CANCELED"}
    with pytest.raises(InvalidTransition):
        _step(run, files, 5)
    ended = actions.do_end_workflow_run(run.id, 1, AttemptEnd.FLOW_FAILED, message="step canceled")
    assert ended.state == "CANCELED"  # a requested cancel wins over how the flow ended
    assert alice.post(f"/workflow-runs/{run.id}/cancel").status_code == 409


def test_a_failed_run_keeps_its_error_and_cancels_what_it_left_running(alice_id: int, files: dict[str, str]) -> None:
    run = _running_run(alice_id)
    left = _step(run, files)
    ended = actions.do_end_workflow_run(run.id, 1, AttemptEnd.FLOW_FAILED, message="step 'x' EXECUTOR_ERROR: boom")
    assert (ended.state, ended.error) == ("EXECUTOR_ERROR", "step 'x' EXECUTOR_ERROR: boom")
    assert Calculation.objects.get(id=left.id).state == "CANCELED"
    events = list(ended.events.values_list("from_state", "to_state"))
    assert events == [("", "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "EXECUTOR_ERROR")]
