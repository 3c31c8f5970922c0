"""What operators do in the Prefect dashboard reaches the platform's rows: a flow run cancelled there
(the dashboard sets CANCELLING, as `prefect flow-run cancel` does) cancels its calculation, or its
workflow run and every step, and the tool's process, container or Slurm job is gone."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import httpx
import pytest

from demo.synthetic import fasta, genome_with_genes, protein_family
from workflows.tests.test_integration import TERMINAL, Api, _flow_run_state, _job_is_running
from workflows.tests.test_workflows import run_workflow, wait_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None) -> Api:
    return Api(live_server.url)


def cancel_in_prefect(flow_run_id: str) -> None:
    """What the dashboard's Cancel button does."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelling())


def _long_genome() -> bytes:
    """Long enough (1.5 Mbp, meta mode) that prodigal is still running when the cancel comes."""
    rng = random.Random(5)
    contigs = {f"c{i}": genome_with_genes(rng, protein_family(rng, length=300, members=3, identity=0.8),
                                          length=300_000) for i in range(5)}  # fmt: skip
    return fasta(contigs).encode()


def test_a_cancel_in_the_dashboard_cancels_the_calculation_and_its_job(
    api: Api, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = {"contigs": api.upload("long.fna", _long_genome())}
    response = api.submit("prodigal", inputs, {"mode": "meta"}, backend=backend, use_cache=False)
    assert response.status_code == 202, response.text
    calc = api.wait_for(response.json()["id"], {"RUNNING"}, timeout_seconds=60)
    job_id = calc["provenance"]["attempts"][0]["job_id"]
    assert _job_is_running(backend, job_id)

    clicked = time.monotonic()
    cancel_in_prefect(calc["flow_run_id"])
    while _job_is_running(backend, job_id):
        assert time.monotonic() - clicked < 30, "the tool still runs 30 s after the cancel"
        time.sleep(0.05)
    gone = time.monotonic() - clicked
    final = api.wait_for(calc["id"], TERMINAL, timeout_seconds=30)
    assert final["state"] == "CANCELED" and final["outputs"] == {}
    assert _flow_run_state(calc["flow_run_id"]) == "CANCELLED"
    actors = [e.actor for e in _events(calc["id"]) if e.to_state == "CANCELING"]
    assert actors == ["operator (Prefect: flow run cancelled)"], actors
    with capsys.disabled():
        print(f"\nDASHBOARD CANCEL ({backend}): Cancel in Prefect -> tool gone in {gone:.1f} s, calculation CANCELED")


def _events(calculation_id: str) -> list[Any]:
    from calculations.models import CalculationEvent

    return list(CalculationEvent.objects.filter(calculation_id=calculation_id))


def test_a_workflow_cancelled_in_the_dashboard_cancels_every_step(api: Api) -> None:
    texts = [api.upload(f"d{i}.txt", f"dashboard {i} {time.time()}\n".encode()) for i in range(4)]
    steps = {"wait": {"tool": "sleep", "params": {"seconds": 96.5},
                      "inputs": {"text": {"each": [f"file:{t}" for t in texts]}}}}  # fmt: skip
    run = run_workflow(api, "pipeline", {"steps": steps})
    deadline = time.monotonic() + 60
    while True:
        current = api.http.get(f"/workflow-runs/{run['id']}").json()
        if sum(step["state"] == "RUNNING" for step in current["steps"]) >= 2:
            break
        assert time.monotonic() < deadline, "no step started"
        time.sleep(0.2)
    cancel_in_prefect(current["flow_run_id"])
    final = wait_run(api, run["id"], timeout_seconds=30)
    assert final["state"] == "CANCELED"
    assert {s["state"] for s in final["steps"]} == {"CANCELED"}
    assert _flow_run_state_any(current["flow_run_id"]) == "CANCELLED"


def _flow_run_state_any(flow_run_id: str, timeout_seconds: float = 15) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if (state and state.is_final()) or time.monotonic() > deadline:
                return state.type.value if state else "NONE"
            time.sleep(0.2)


def test_each_calculation_flow_run_has_its_table_artifact_with_admin_links_a_staff_browser_opens(
    api: Api, live_server: Any
) -> None:
    import json
    import re

    from django.contrib.auth import get_user_model
    from django.test import Client
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from calculations.admin_links import admin_path

    molecule = b"CCOC artifact\n"
    calc = api.submit("obabel", {"molecules": api.upload("a.smi", molecule)}, {"output_format": "sdf"}, use_cache=False)
    done = api.wait_for(calc.json()["id"], TERMINAL)
    assert done["state"] == "COMPLETE"
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while not (artifacts := client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(done["flow_run_id"])]))
        )):  # fmt: skip
            assert time.monotonic() < deadline, "no artifact on the calculation's flow run"
            time.sleep(0.2)
    (artifact,) = artifacts
    # markdown links, which the dashboard renders, to the live server's admin (the worker's public URL)
    assert artifact.type == "table"
    assert f"({live_server.url}{admin_path('calculation', done['id'])})" in (artifact.description or "")
    rows = json.loads(str(artifact.data))
    kinds = {(row["kind"], row["name"]) for row in rows}
    assert {("input", "molecules"), ("parameter", "output_format"), ("output", "molecules")} <= kinds
    (output,) = [row for row in rows if row["kind"] == "output"]
    assert output["sha256"] and output["size"] > 0
    (page,) = re.findall(r"\]\((.+)\)", output["value"])
    (download,) = re.findall(r"\]\((.+)\)", output["link"])
    assert page.startswith(live_server.url) and download.startswith(live_server.url)
    assert httpx.get(download).status_code == 302  # no session: the admin's login page, no data
    staff = get_user_model().objects.create_superuser("artifact-staff", password="a-long-password-1")
    session = Client()
    session.force_login(staff)
    cookies = {"sessionid": session.cookies["sessionid"].value}
    answer = httpx.get(download, cookies=cookies)
    assert answer.status_code == 200 and b"V2000" in answer.content
    assert "molecules.sdf" in httpx.get(page, cookies=cookies).text
    (source,) = [row for row in rows if row["kind"] == "input"]
    (source_download,) = re.findall(r"\]\((.+)\)", source["link"])
    assert httpx.get(source_download, cookies=cookies).content == molecule


@pytest.fixture
def choose_profile(prefect_server: str) -> str:
    from workflows.orchestration.deployments import deploy

    deploy(["choose_profile"])
    return "choose-profile"


def _uploads(api: Api) -> tuple[str, str]:
    from workflows.tests.test_workflows import DEMO

    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    return genome, api.upload("family.hmm", (DEMO / "family.hmm").read_bytes())


def _hmmsearch_params(api: Api, run: dict[str, Any]) -> dict[str, Any]:
    step = next(s for s in run["steps"] if s["tool"] == "hmmsearch")
    return dict(api.http.get(f"/calculations/{step['calculation_id']}").json()["params"])


def test_the_example_flow_waits_for_an_operator_and_resumes_from_prefects_form(api: Api, choose_profile: str) -> None:
    from prefect.flow_runs import resume_flow_run

    genome, profile = _uploads(api)
    run = run_workflow(api, choose_profile, {"genomes": [genome]})
    paused = wait_run(api, run["id"], {"PAUSED", *TERMINAL}, timeout_seconds=120)
    assert paused["state"] == "PAUSED", paused["error"]
    assert [s["tool"] for s in paused["steps"]] == ["prodigal"]
    resume_flow_run(UUID(paused["flow_run_id"]), run_input={"profile": profile, "evalue": 0.001})  # the form
    final = wait_run(api, run["id"], timeout_seconds=120)
    assert final["state"] == "COMPLETE", final["error"]
    assert _hmmsearch_params(api, final)["evalue"] == 0.001  # the operator's input was used


def test_a_paused_run_is_resumed_through_the_api_with_its_input_checked(api: Api, choose_profile: str) -> None:
    """The input is checked against the form the run paused with, before the run goes on (a mistake
    is a 422 or a 404 and the run still waits); of concurrent resumes exactly one wins."""
    genome, profile = _uploads(api)
    theirs = Api(str(api.http.base_url).removesuffix("/api/v2/"), user="someone-else").upload("t.hmm", b"HMMER3/f\n")
    run = run_workflow(api, choose_profile, {"genomes": [genome]})
    resume = f"/workflow-runs/{run['id']}/resume"
    assert api.http.post(resume, json={"input": {}}).status_code == 409  # not yet
    paused = wait_run(api, run["id"], {"PAUSED", *TERMINAL}, timeout_seconds=120)
    assert paused["state"] == "PAUSED", paused["error"]
    placeholder = {"__prefect_kind": "workspace_variable", "variable_name": "nope"}
    for run_input, status, where in [
        ({"profile": profile, "evalue": "low"}, 422, "input.evalue"),
        ({"profile": "x"}, 422, "input.profile"),
        ({"profile": profile, "note": "hi"}, 422, "'note' was unexpected"),
        ({"profile": profile, "evalue": placeholder}, 422, "input.evalue.__prefect_kind"),
        ({"profile": theirs}, 404, "input.profile"),
    ]:
        bad = api.http.post(resume, json={"input": run_input})
        assert (bad.status_code, where in bad.json()["detail"]) == (status, True), bad.text
    assert api.http.get(f"/workflow-runs/{run['id']}").json()["state"] == "PAUSED"

    evalues = [0.01, 0.02, 0.03, 0.04, 0.05]
    with ThreadPoolExecutor(len(evalues)) as pool:
        answers = list(pool.map(lambda e: api.http.post(resume, json={"input": {"profile": profile, "evalue": e}}),
                                evalues))  # fmt: skip
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409], [a.text for a in answers]
    assert all("already resumed" in a.json()["detail"] for a in answers if a.status_code == 409)
    (won,) = [e for e, a in zip(evalues, answers, strict=True) if a.status_code == 202]
    final = wait_run(api, run["id"], timeout_seconds=120)
    assert final["state"] == "COMPLETE", final["error"]
    assert _hmmsearch_params(api, final)["evalue"] == won  # the winner's input, and only it, was used


def test_a_pause_no_one_answers_fails_the_run_saying_so(api: Api, choose_profile: str) -> None:
    genome, _ = _uploads(api)
    for wrong in (-1, 0, 10**12):
        refused = api.http.post(
            f"/workflows/{choose_profile}/runs", json={"params": {"genomes": [genome], "pause_timeout_seconds": wrong}}
        )
        assert refused.status_code == 422 and "params.pause_timeout_seconds" in refused.json()["detail"]
    run = run_workflow(api, choose_profile, {"genomes": [genome], "pause_timeout_seconds": 3})
    final = wait_run(api, run["id"], timeout_seconds=120)
    assert final["state"] == "EXECUTOR_ERROR"
    assert "not resumed within 3 s" in final["error"]


def test_a_paused_run_is_canceled(api: Api, choose_profile: str) -> None:
    genome, _ = _uploads(api)
    run = run_workflow(api, choose_profile, {"genomes": [genome]})
    assert wait_run(api, run["id"], {"PAUSED", *TERMINAL}, timeout_seconds=120)["state"] == "PAUSED"
    assert api.http.post(f"/workflow-runs/{run['id']}/cancel").status_code == 202
    assert wait_run(api, run["id"], timeout_seconds=30)["state"] == "CANCELED"


def _run_deployment(name: str, parameters: dict[str, Any]) -> Any:
    """As the dashboard's Run form does: a flow run of the deployment with the form's parameters."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        deadline = time.monotonic() + 90
        while not ((state := client.read_flow_run(run.id).state) and state.is_final()):
            assert time.monotonic() < deadline, f"{name} still {state}"
            time.sleep(0.2)
        return deployment, state


def test_a_tool_launched_from_the_dashboard_runs_as_the_operator_accounts_calculation(
    api: Api, prefect_server: str
) -> None:
    from calculations.models import Calculation
    from emgapiv2.config import get_settings
    from workflows.orchestration.deployments import deploy

    deploy(["tool-obabel"])
    operator = Api(str(api.http.base_url).removesuffix("/api/v2/"), user=get_settings().workflow.operator_username)
    molecules = operator.upload("o.smi", b"CCCl operator\n")
    deployment, state = _run_deployment(
        "tool-obabel/tool-obabel", {"inputs": {"molecules": molecules}, "params": {"output_format": "sdf"}}
    )
    schema = deployment.parameter_openapi_schema
    assert {"inputs", "params", "backend"} <= set(schema["properties"])  # the form: the tool's own fields
    assert state.is_completed(), state.message
    calc = Calculation.objects.get(inputs__file_id=molecules)
    assert (calc.owner.username, calc.state) == (get_settings().workflow.operator_username, "COMPLETE")
    listed = operator.http.get("/calculations", params={"tool": "obabel"}).json()["items"]
    assert str(calc.id) in {c["id"] for c in listed}  # in the API like any other


def test_a_workflow_launched_from_the_dashboard_is_a_workflow_run_of_the_operator_account(api: Api) -> None:
    from calculations.models import WorkflowRun
    from emgapiv2.config import get_settings

    operator = Api(str(api.http.base_url).removesuffix("/api/v2/"), user=get_settings().workflow.operator_username)
    molecules = operator.upload("w.smi", b"CCBr operator\n")
    steps = {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{molecules}"}}}
    _, state = _run_deployment("pipeline/pipeline", {"steps": steps})
    assert state.is_completed(), state.message
    run = WorkflowRun.objects.get(workflow="pipeline", owner__username=get_settings().workflow.operator_username)
    # the worker records the run's end from the flow run's final state: just after Prefect shows it
    ended = wait_run(operator, str(run.id), TERMINAL, timeout_seconds=30)
    assert ended["state"] == "COMPLETE", ended["error"]
    assert ended["steps"][0]["state"] == "COMPLETE"


def test_a_dashboard_launch_naming_another_users_file_fails_saying_why_in_one_line(
    api: Api, prefect_server: str
) -> None:
    from calculations.models import Calculation, WorkflowRun
    from workflows.orchestration.deployments import deploy

    deploy(["tool-obabel"])
    molecules = api.upload("theirs.smi", b"CCI integration\n")  # the user "integration"'s, not the operator's
    _, state = _run_deployment("tool-obabel/tool-obabel", {"inputs": {"molecules": molecules}})
    assert state.is_failed() and state.message.startswith(  # the message the dashboard's list of runs shows
        f"obabel not submitted: inputs.molecules: file {molecules} is not one of the operator account's ('operator')"
    ), state.message
    assert "\n" not in state.message and "Traceback" not in state.message
    steps = {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{molecules}"}}}
    _, state = _run_deployment("pipeline/pipeline", {"steps": steps})
    assert state.is_failed() and state.message.startswith(
        f"not started: steps.convert.inputs.molecules: file {molecules} is not one of the operator account's"
    ), state.message
    assert not Calculation.objects.filter(inputs__file_id=molecules).exists() and not WorkflowRun.objects.exists()
