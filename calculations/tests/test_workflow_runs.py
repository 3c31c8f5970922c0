"""Workflow runs through the API and the actions, without Prefect (flow runs are the integration
tests'): every mistake a submitted pipeline can hold is a 422 that names it, a run counts once
against the quota, and a run's life (start, steps, resume, cancel) goes through guarded transitions."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from calculations import actions
from calculations.actions import do_set_user_quota
from calculations.errors import InvalidInput, InvalidTransition, QuotaExceeded
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
        (lambda s, f: s["genes"].update(tools="x"), "steps.genes.tools: Extra inputs are not permitted"),
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


def test_a_long_chain_in_reverse_order_is_ordered_in_linear_time() -> None:
    """Kahn's algorithm: no recursion (a 940-step chain was a RecursionError, an HTML 500)."""
    from calculations.pipelines import Ref, _order

    count = 10_000
    chain = {
        f"s{i}": {"molecules": [Ref(step=f"s{i - 1}", role="molecules") if i else Ref(file_id=uuid4())]}
        for i in reversed(range(count))
    }
    started = time.perf_counter()
    assert _order(chain) == [f"s{i}" for i in range(count)]
    # ~20 ms on a quiet machine, 1.5 s seen on a loaded one; quadratic (10^8 steps) would take minutes
    assert time.perf_counter() - started < 5.0


def test_the_longest_pipeline_listed_in_reverse_order_is_accepted(alice: ApiClient, files: dict[str, str]) -> None:
    first = {"tool": "obabel", "inputs": {"molecules": f"file:{files['molecule']}"}}
    chain = {f"s{i}": {"tool": "obabel", "inputs": {"molecules": f"s{i - 1}.molecules"}} if i else first
             for i in reversed(range(1000))}  # fmt: skip
    response = submit(alice, chain)
    assert response.status_code == 202, response.content[:500]


def test_a_list_of_files_past_its_bound_is_a_422(
    alice: ApiClient, files: dict[str, str], workflow_catalogue: list[Any]
) -> None:
    from prefect.utilities.callables import parameter_schema

    from calculations.orchestrator import WorkflowInfo
    from workflows.flows.choose_profile import choose_profile
    from workflows.sdk import MAX_FILES

    schema = parameter_schema(choose_profile.fn).model_dump(exclude_unset=True)
    workflow_catalogue.append(WorkflowInfo("choose-profile", "", schema))
    genomes = [files["genome"]] * (MAX_FILES + 1)
    response = alice.post("/workflows/choose-profile/runs", {"params": {"genomes": genomes}})
    detail = response.json()["detail"]
    assert (
        response.status_code == 422 and f"params.genomes: has {MAX_FILES + 1}; at most {MAX_FILES} items" in detail
    ), detail[:500]
    assert WorkflowRun.objects.count() == 0


def _start(step: Calculation) -> Calculation:
    return actions.do_start_calculation(
        step.id, step.attempt, flow_run_id=None, backend="local", host="h", workdir="/w"
    )


def _fail(step: Calculation) -> None:
    actions.do_end_attempt(step.id, step.attempt, AttemptEnd.TOOL_FAILED, message="boom")


def test_steps_in_flight_count_against_the_quota_and_one_beyond_it_waits(
    alice: ApiClient, alice_id: int, files: dict[str, str]
) -> None:
    do_set_user_quota("alice", max_active_calculations=2)
    run = _running_run(alice_id)
    steps = [_step(run, files, index) for index in range(3)]
    _start(steps[0])  # the run counted one already: its first step takes that slot
    _start(steps[1])
    with pytest.raises(QuotaExceeded, match=r"1 workflow run \(2 steps in flight\) queued or running; the limit is 2"):
        _start(steps[2])
    assert Calculation.objects.get(id=steps[2].id).state == "QUEUED"  # it waits; nothing failed
    molecule = {"inputs": {"molecules": files["molecule"]}, "use_cache": False}
    refused = alice.post("/tools/obabel/calculations", molecule)
    assert refused.status_code == 429 and "(2 steps in flight)" in refused.json()["detail"]

    _fail(steps[0])  # a slot frees: the waiting step takes it
    assert _start(steps[2]).state == "INITIALIZING"


def test_a_run_never_waits_on_itself_and_each_run_gets_a_step(alice_id: int, files: dict[str, str]) -> None:
    """A quota of 2 held by two runs: each still runs a step (its own slot), one at a time."""
    do_set_user_quota("alice", max_active_calculations=2)
    first, second = _running_run(alice_id), _running_run(alice_id)
    a = [_step(first, files, index) for index in range(2)]
    b = [_step(second, files, index) for index in range(2)]
    _start(a[0])
    _start(b[0])
    for waiting in (a[1], b[1]):
        with pytest.raises(QuotaExceeded):
            _start(waiting)
    _fail(a[0])  # the run has no step in progress: its next one starts whatever else is held
    assert _start(a[1]).state == "INITIALIZING"


def test_a_step_waiting_out_its_retry_backoff_holds_no_slot(alice_id: int, files: dict[str, str]) -> None:
    do_set_user_quota("alice", max_active_calculations=1)
    run = _running_run(alice_id)
    steps = [_step(run, files, index) for index in range(2)]
    _start(steps[0])
    actions.do_end_attempt(steps[0].id, 1, AttemptEnd.BACKEND_UNAVAILABLE, message="engine down")
    assert Calculation.objects.get(id=steps[0].id).state == "QUEUED"  # in its retry's backoff: no slot held
    assert _start(steps[1]).state == "INITIALIZING"


def test_canceling_one_step_leaves_its_workflows_flow_run_alone(
    alice_id: int, files: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    """The step runs as a task run of the workflow's flow run: stopping that flow run would cancel
    the whole workflow run, as if an operator had. Only the step's tool is stopped (by its worker)."""
    from calculations.orchestrator import register_orchestrator
    from calculations.tests.test_actions import RecordingOrchestrator

    recording = RecordingOrchestrator()
    previous = register_orchestrator(recording)
    try:
        run = _running_run(alice_id)
        step = _step(run, files)
        actions.do_start_calculation(step.id, 1, flow_run_id=run.flow_run_id, backend="local", host="h", workdir="/w")
        with django_capture_on_commit_callbacks(execute=True):
            assert actions.do_request_cancel(step.id, actor="user:1").state == "CANCELING"
    finally:
        register_orchestrator(previous)
    assert recording.stopped == []
    assert WorkflowRun.objects.get(id=run.id).state == "RUNNING"


def _running_run(alice_id: int) -> WorkflowRun:
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    return actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w1")


def _step(run: WorkflowRun, files: dict[str, str], index: int = 0, attempt: int = 1) -> Calculation:
    return actions.do_create_step(
        run.id, attempt, step="convert", index=index, tool="obabel",
        inputs={"molecules": UUID(files["molecule"])}, params={"output_format": "sdf"}, use_cache=False,
    )  # fmt: skip


def test_steps_are_calculations_created_whatever_the_quota_and_found_again_when_resumed(
    alice: ApiClient, alice_id: int, files: dict[str, str]
) -> None:
    do_set_user_quota("alice", max_active_calculations=1)
    run = _running_run(alice_id)
    steps = [_step(run, files, index) for index in range(3)]  # QUEUED steps count nothing: 3 are fine
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


def test_a_batch_of_steps_refuses_only_its_bad_steps_and_a_stopped_run_starts_none(
    alice_id: int, files: dict[str, str]
) -> None:
    run = _running_run(alice_id)
    molecule = UUID(files["molecule"])

    def new(index: int, file_id: UUID = molecule, **params: str) -> actions.NewStep:
        return actions.NewStep("convert", index, "obabel", {"molecules": file_id}, params or {"output_format": "sdf"})

    first = _step(run, files, 0)
    created = actions.do_create_steps(
        run.id, 1, [new(0), new(1), new(2, uuid4()), new(3, output_format="nope"), new(4), new(4)]
    )
    assert created[0] == first  # found again, not created twice
    assert isinstance(created[1], Calculation) and created[1].step_index == 1
    assert isinstance(created[2], InvalidInput) and "not found" in str(created[2])
    assert isinstance(created[3], InvalidInput) and "output_format" in str(created[3])
    assert created[4] == created[5]  # a step named twice is one step
    assert set(Calculation.objects.filter(workflow_run=run).values_list("step_index", flat=True)) == {0, 1, 4}

    alice_cancels = actions.do_request_cancel_workflow_run(run.id, actor="user:alice")
    assert alice_cancels.state in ("CANCELING", "CANCELED")
    again = actions.do_create_steps(run.id, 1, [new(1), new(5)])
    assert again[0] == created[1]  # an existing step is still found
    assert isinstance(again[1], InvalidTransition) and "'convert' of attempt 1 not started" in str(again[1])
    assert not Calculation.objects.filter(workflow_run=run, step_index=5).exists()


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


@pytest.fixture
def more_workflows(workflow_catalogue: list[Any]) -> None:
    """`choose-profile` (the example that pauses), and a workflow with a free-form parameter."""
    from prefect.utilities.callables import parameter_schema

    from calculations.orchestrator import WorkflowInfo
    from workflows.flows.choose_profile import choose_profile

    schema = parameter_schema(choose_profile.fn).model_dump(exclude_unset=True)
    free_form = {"type": "object", "properties": {"options": {"type": "object"}}}
    workflow_catalogue += [WorkflowInfo("choose-profile", "", schema), WorkflowInfo("free-form", "", free_form)]


PLACEHOLDER = {"__prefect_kind": "workspace_variable", "variable_name": "nope"}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "workflow, params, message",
    [
        ("choose-profile", {"genomes": [], "x": 1}, "params: Additional properties are not allowed ('x' was"),
        ("choose-profile", {"genomes": [], "x": PLACEHOLDER},
         "params.x.__prefect_kind: a key starting '__prefect' is one of Prefect's placeholders"),
        ("free-form", {"options": {"a": [{"b": {"__prefect_kind": "json", "value": "[]"}}]}},
         "params.options.a[0].b.__prefect_kind: a key starting '__prefect'"),
        ("free-form", {"options": {"__prefectx": 1}}, "params.options.__prefectx: a key starting '__prefect'"),
        ("free-form", {"options": _nested(800)}, "params.options.a.a.a"),
        ("free-form", {"options": _nested(800)}, "nested more than 32 levels deep"),
        ("free-form", {"options": {"text": "x" * 600_000}}, "params: 600023 bytes as JSON; at most 524288"),
        ("choose-profile", {"genomes": [], "pause_timeout_seconds": -5}, "params.pause_timeout_seconds: "),
        ("choose-profile", {"genomes": [], "pause_timeout_seconds": 0}, "params.pause_timeout_seconds: "),
        ("choose-profile", {"genomes": [], "pause_timeout_seconds": 10**12}, "params.pause_timeout_seconds: "),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("more_workflows")
def test_workflow_parameters_the_flow_does_not_take_as_they_are_are_a_422(
    alice: ApiClient, workflow: str, params: dict[str, Any], message: str
) -> None:
    """Unknown keys, Prefect's placeholders (its server would fill them in from its own variables,
    and its error would name them), values nested or large enough to break the dispatcher, and a
    pause timeout that is not a positive, bounded number of seconds: all refused before a run exists."""
    response = alice.post(f"/workflows/{workflow}/runs", {"params": params})
    assert response.status_code == 422, response.content
    assert message in response.json()["detail"]
    assert WorkflowRun.objects.count() == 0


def _paused_run(owner_id: int) -> WorkflowRun:
    run = actions.do_create_workflow_run(owner_id, "choose-profile", {"genomes": []})
    actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w1")
    return actions.do_pause_workflow_run(run.id, 1, description="Choose the profile")


@pytest.fixture
def paused_in_prefect(monkeypatch: pytest.MonkeyPatch) -> list[tuple[UUID, dict[str, Any]]]:
    """Stand-in for a flow run Prefect holds paused for `ProfileChoice` (the integration tests pause a
    real one): the schema Prefect stores for the pause's input, and the resumes it was given."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.input.run_input import run_input_subclass_from_type

    from workflows.flows.choose_profile import ProfileChoice
    from workflows.orchestration import paused_runs

    wanted = run_input_subclass_from_type(ProfileChoice)
    schema = create_v2_schema(wanted.__name__, model_base=wanted)
    resumed: list[tuple[UUID, dict[str, Any]]] = []
    monkeypatch.setattr(paused_runs, "paused_input_schema", lambda flow_run_id: schema, raising=False)
    monkeypatch.setattr(
        paused_runs, "resume_flow_run", lambda flow_run_id, run_input: resumed.append((flow_run_id, run_input))
    )
    return resumed


def test_a_resume_input_is_checked_before_the_run_continues(
    alice: ApiClient, alice_id: int, bob: ApiClient, paused_in_prefect: list[Any]
) -> None:
    run = _paused_run(alice_id)
    bobs = bob.upload("b.hmm", b"HMMER3/f\n").json()["id"]
    mine = alice.upload("a.hmm", b"HMMER3/f\n").json()["id"]
    for run_input, status, message in [
        ({"profile": "x"}, 422, "input.profile: 'x' is not a file id"),
        ({"profile": mine, "evalue": -1}, 422, "input.evalue: "),
        ({"profile": mine, "more": 1}, 422, "Additional properties are not allowed ('more' was unexpected)"),
        ({"profile": mine, "evalue": PLACEHOLDER}, 422, "input.evalue.__prefect_kind: a key starting '__prefect'"),
        ({"profile": bobs}, 404, f"input.profile: file {bobs} not found"),
    ]:
        response = alice.post(f"/workflow-runs/{run.id}/resume", {"input": run_input})
        assert (response.status_code, message in response.json()["detail"]) == (status, True), response.content
    assert paused_in_prefect == [] and WorkflowRun.objects.get(id=run.id).state == "PAUSED"


def test_of_concurrent_resumes_one_wins_and_the_others_hear_it_was_resumed(
    alice: ApiClient, alice_id: int, paused_in_prefect: list[Any]
) -> None:
    run = _paused_run(alice_id)
    profile = alice.upload("a.hmm", b"HMMER3/f\n").json()["id"]
    first = alice.post(f"/workflow-runs/{run.id}/resume", {"input": {"profile": profile, "evalue": 0.1}})
    assert (first.status_code, first.json()["state"]) == (202, "RUNNING"), first.content
    again = alice.post(f"/workflow-runs/{run.id}/resume", {"input": {"profile": profile, "evalue": 0.5}})
    assert again.status_code == 409 and "already resumed" in again.json()["detail"], again.content
    assert paused_in_prefect == [(run.flow_run_id, {"profile": profile, "evalue": 0.1})]  # only the winner's input
    assert actions.do_unpause_workflow_run(run.id, 1).state == "RUNNING"  # the flow, given its input, goes on
    events = list(WorkflowRun.objects.get(id=run.id).events.values_list("to_state", "actor"))
    assert events[-1] == ("RUNNING", f"user:{alice_id}")  # the resume is logged once, as the user's


def test_a_resume_overtaken_by_a_concurrent_one_hears_it_was_resumed(
    alice: ApiClient, alice_id: int, paused_in_prefect: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser read the run PAUSED, and by the time it asks Prefect for the form the winner has
    resumed the flow run: it hears why, not Prefect's "not paused"."""
    from calculations.errors import Conflict
    from workflows.orchestration import paused_runs

    run = _paused_run(alice_id)
    profile = alice.upload("a.hmm", b"HMMER3/f\n").json()["id"]

    def won_meanwhile(flow_run_id: UUID) -> dict[str, Any]:
        actions.do_resume_workflow_run(run.id, flow_run_id, {"profile": profile}, actor=f"user:{alice_id}")
        raise Conflict(f"flow run {flow_run_id} is not paused")

    monkeypatch.setattr(paused_runs, "paused_input_schema", won_meanwhile)
    late = alice.post(f"/workflow-runs/{run.id}/resume", {"input": {"profile": profile, "evalue": 0.5}})
    assert late.status_code == 409 and "already resumed" in late.json()["detail"], late.content
    assert paused_in_prefect == [(run.flow_run_id, {"profile": profile})]  # the winner's input alone


def test_a_resume_prefect_refuses_leaves_the_run_paused(
    alice: ApiClient, alice_id: int, paused_in_prefect: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from calculations.errors import Conflict
    from workflows.orchestration import paused_runs

    def timed_out(flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        raise Conflict("the pause timed out: the run can no longer be resumed")

    monkeypatch.setattr(paused_runs, "resume_flow_run", timed_out)
    run = _paused_run(alice_id)
    profile = alice.upload("a.hmm", b"HMMER3/f\n").json()["id"]
    response = alice.post(f"/workflow-runs/{run.id}/resume", {"input": {"profile": profile}})
    assert response.status_code == 409 and "timed out" in response.json()["detail"]
    assert WorkflowRun.objects.get(id=run.id).state == "PAUSED"


def test_what_a_flow_returned_is_kept_on_its_run_and_shown(alice: ApiClient, alice_id: int) -> None:
    run = _running_run(alice_id)
    returned = {"calls": 3, "file": uuid4(), "hits": [1.5, None, "x"]}  # a UUID is JSON as pydantic makes it
    ended = actions.do_end_workflow_run(run.id, 1, AttemptEnd.SUCCEEDED, result=returned)
    assert (ended.state, ended.error) == ("COMPLETE", "")
    shown = alice.get(f"/workflow-runs/{run.id}").json()
    assert shown["result"] == {"calls": 3, "file": str(returned["file"]), "hits": [1.5, None, "x"]}
    assert "result" not in alice.get("/workflow-runs").json()["items"][0]  # the list stays small


@pytest.mark.parametrize(
    "returned, why",
    [
        ("x" * 2000, "its result was not kept: 2002 bytes of JSON, more than EMGAPI_WORKFLOW__MAX_RESULT_BYTES (1024)"),
        (object(), "its result was not kept: the flow returned a object, not JSON"),
        ({"ratio": float("nan")}, "its result was not kept: the flow returned a dict, not JSON"),
        (["a\x00b"], "its result was not kept: it holds a NUL character"),
    ],
)  # fmt: skip
def test_a_result_that_cannot_be_kept_leaves_the_run_complete_and_says_why(
    alice: ApiClient, alice_id: int, returned: Any, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emgapiv2.config import get_settings

    monkeypatch.setattr(get_settings().workflow, "max_result_bytes", 1024)
    run = _running_run(alice_id)
    ended = actions.do_end_workflow_run(run.id, 1, AttemptEnd.SUCCEEDED, result=returned)
    shown = alice.get(f"/workflow-runs/{run.id}").json()
    assert (shown["state"], shown["result"]) == ("COMPLETE", None)
    assert shown["error"].startswith(why) and "\n" not in shown["error"]
    assert ended.events.last().reason == f"every step completed; {shown['error']}"  # type: ignore[union-attr]


def test_a_run_shows_its_steps_to_come_their_outputs_and_who_canceled_it(
    alice: ApiClient, alice_id: int, files: dict[str, str]
) -> None:
    from calculations.actions import OutputBlob, do_end_attempt, do_mark_running, do_start_calculation
    from calculations.storage import get_storage

    steps = {**_two_steps(files["genome"]), "more": {"tool": "obabel", "inputs": {
        "molecules": {"each": [f"file:{files['molecule']}"] * 2}}}}  # fmt: skip
    run = WorkflowRun.objects.get(id=submit(alice, steps).json()["id"])
    planned = [
        (s["name"], s["index"], s["tool"]) for s in alice.get(f"/workflow-runs/{run.id}").json()["pending_steps"]
    ]
    assert sorted(planned) == [("genes", 0, "prodigal"), ("hits", 0, "hmmsearch"), ("more", 0, "obabel"),
                               ("more", 1, "obabel")]  # fmt: skip
    assert planned[-1][0] == "hits"  # in the order they can start: after the step whose output it takes

    actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w1")
    genes = actions.do_create_step(run.id, 1, step="genes", index=0, tool="prodigal",
                                   inputs={"contigs": UUID(files["genome"])}, params={}, use_cache=False)  # fmt: skip
    blob = get_storage().put_path(__import__("pathlib").Path(__file__))
    do_start_calculation(genes.id, 1, flow_run_id=run.flow_run_id, backend="local", host="h", workdir="/w")
    do_mark_running(genes.id, 1, job_id="1", argv=["prodigal"], executable=None)
    do_end_attempt(genes.id, 1, AttemptEnd.SUCCEEDED, outputs=[OutputBlob("proteins", "p.faa", blob.sha256, blob.size)])
    more = actions.do_create_step(run.id, 1, step="more", index=0, tool="obabel",
                                  inputs={"molecules": UUID(files["molecule"])}, params={})  # fmt: skip

    assert alice.post(f"/workflow-runs/{run.id}/cancel").status_code == 202
    shown = alice.get(f"/workflow-runs/{run.id}").json()
    assert sorted((s["name"], s["index"]) for s in shown["pending_steps"]) == [("hits", 0), ("more", 1)]
    first, second = shown["steps"]
    assert [(f["name"], f["size"], f["sha256"], f["output_role"], f["produced_by"]) for f in first["outputs"]] == [
        ("p.faa", blob.size, blob.sha256, "proteins", str(genes.id))  # (produced_by was null here before)
    ]
    assert alice.get(f"/files/{first['outputs'][0]['id']}").status_code == 200  # the owner's own file
    assert first["canceled_by"] is None and first["finished_at"] is not None
    assert (shown["state"], shown["canceled_by"]) == ("CANCELING", "alice")  # until its flow returns
    assert second["state"] == "CANCELED" and second["canceled_by"] == f"alice (workflow run {run.id} canceled)"
    cancel = run.events.get(to_state="CANCELING")
    assert abs(datetime.fromisoformat(shown["canceled_at"]) - cancel.created_at) < timedelta(milliseconds=1)
    calc = alice.get(f"/calculations/{more.id}").json()
    assert (calc["canceled_by"], calc["canceled_at"]) == (second["canceled_by"], second["canceled_at"])
    assert alice.get(f"/calculations/{genes.id}").json()["canceled_by"] is None
    # what a client polls while it follows the run: the same, counted, without the steps
    progress = alice.get(f"/workflow-runs/{run.id}/progress").json()
    assert progress["step_states"] == {"COMPLETE": 1, "CANCELED": 1} and progress["pending_steps"] == 2
    assert {key: progress[key] for key in ("id", "state", "error", "finished_at")} == {
        key: shown[key] for key in ("id", "state", "error", "finished_at")
    }
    assert "steps" not in progress
