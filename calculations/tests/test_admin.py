"""The Django admin for operators: each calculation and workflow run links to its flow run in the
Prefect dashboard; a failed calculation is rerun, and a workflow run canceled, from an action."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from calculations import actions
from calculations.models import Calculation, WorkflowRun
from calculations.policies import AttemptEnd
from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]


@pytest.fixture
def staff(db: None) -> Client:
    get_user_model().objects.create_superuser("root", password="a-long-password-1")
    client = Client()
    client.force_login(get_user_model().objects.get(username="root"))
    return client


def _failed(alice: ApiClient, uploaded: Upload) -> Calculation:
    body = {
        "inputs": {"molecules": uploaded("m.smi", b"CCO\n")},
        "params": {"output_format": "sdf"},
        "use_cache": False,
    }
    calc = Calculation.objects.get(id=alice.post("/tools/obabel/calculations", body).json()["id"])
    calc = actions.do_start_calculation(calc.id, 1, flow_run_id=uuid4(), backend="local", host="h", workdir="/w")
    return actions.do_end_attempt(calc.id, 1, AttemptEnd.TOOL_FAILED, message="boom")


def test_a_calculation_links_to_its_flow_run_and_a_failed_one_is_rerun(
    staff: Client, alice: ApiClient, uploaded: Upload
) -> None:
    failed = _failed(alice, uploaded)
    page = staff.get(f"/admin/calculations/calculation/{failed.id}/change/").content.decode()
    assert f"{get_settings().prefect.ui_url}/runs/flow-run/{failed.flow_run_id}" in page

    answer = staff.post(
        "/admin/calculations/calculation/", {"action": "rerun", "_selected_action": [str(failed.id)]}, follow=True
    )
    assert answer.status_code == 200
    rerun = Calculation.objects.exclude(id=failed.id).get()
    assert (rerun.state, rerun.tool, rerun.params, rerun.owner_id) == (
        "QUEUED",
        "obabel",
        failed.params,
        failed.owner_id,
    )
    assert dict(rerun.inputs.values_list("role", "file_id")) == dict(failed.inputs.values_list("role", "file_id"))
    assert f"rerun as calculation {rerun.id}" in answer.content.decode()


def test_a_workflow_run_links_to_its_flow_run_and_is_canceled_from_an_action(staff: Client, alice_id: int) -> None:
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    run = actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w")
    page = staff.get(f"/admin/calculations/workflowrun/{run.id}/change/").content.decode()
    assert f"/runs/flow-run/{run.flow_run_id}" in page
    staff.post("/admin/calculations/workflowrun/", {"action": "cancel", "_selected_action": [str(run.id)]})
    assert WorkflowRun.objects.get(id=run.id).state == "CANCELING"


def test_a_failed_tes_task_is_rerun_as_a_task(staff: Client, alice: ApiClient, alice_token: str) -> None:
    task = {
        "name": "again",
        "inputs": [{"path": "/data/m.smi", "content": "CCO\n"}],
        "executors": [{"image": "emgapi/obabel:3.1.1", "command": ["obabel", "/data/m.smi"]}],
    }
    tes = Client(headers={"Authorization": f"Bearer {alice_token}"})
    task_id = tes.post("/ga4gh/tes/v1/tasks", task, content_type="application/json").json()["id"]
    actions.do_start_calculation(task_id, 1, flow_run_id=uuid4(), backend="container", host="h", workdir="/w")
    actions.do_end_attempt(task_id, 1, AttemptEnd.TOOL_FAILED, message="boom")
    staff.post("/admin/calculations/calculation/", {"action": "rerun", "_selected_action": [task_id]})
    rerun = Calculation.objects.exclude(id=task_id).get()
    assert (rerun.state, rerun.tool, rerun.tes.name) == ("QUEUED", "ga4gh-tes", "again")
    page = staff.get(f"/admin/calculations/calculation/{task_id}/change/").content.decode()
    assert "again" in page and "obabel" in page  # the task's name and executors, beside its calculation
    answer = tes.get(f"/ga4gh/tes/v1/tasks/{rerun.id}", {"view": "FULL"}).json()
    assert answer["inputs"][0]["content"] == "CCO\n" and answer["state"] == "QUEUED"


def test_operators_see_uploads(staff: Client, alice_id: int) -> None:
    assert staff.get("/admin/calculations/upload/").status_code == 200
