"""The Django admin for operators: each calculation and workflow run links to its flow run in the
Prefect dashboard; a failed calculation is rerun, and a workflow run canceled, from an action. A
calculation's page shows its provenance as tables, its outputs and their downloads, the tail of its
logs and each event's actor by username; downloads are for staff sessions only."""

from __future__ import annotations

import io
from collections.abc import Callable
from uuid import UUID, uuid4

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from calculations import actions
from calculations.admin_links import admin_path, admin_url, file_download_url
from calculations.models import Calculation, File, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.storage import get_storage
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
    assert "rerun as calculation" in answer.content.decode() and str(rerun.id) in answer.content.decode()


def test_a_rerun_names_who_pressed_it_and_the_two_calculations_link_to_each_other(
    staff: Client, alice: ApiClient, uploaded: Upload
) -> None:
    failed = _failed(alice, uploaded)
    staff.post("/admin/calculations/calculation/", {"action": "rerun", "_selected_action": [str(failed.id)]})
    rerun = Calculation.objects.exclude(id=failed.id).get()
    root = get_user_model().objects.get(username="root")
    assert rerun.rerun_of_id == failed.id
    first = rerun.events.get()
    assert (first.actor, first.to_state, first.reason) == (
        f"staff:{root.id}",
        "QUEUED",
        f"rerun of calculation {failed.id}",
    )
    note = failed.events.order_by("created_at", "id").last()
    assert note is not None and note.actor == f"staff:{root.id}" and str(rerun.id) in note.reason

    old_page = staff.get(admin_path("calculation", failed.id)).content.decode()
    assert f'href="{admin_path("calculation", rerun.id)}"' in old_page  # its reruns
    assert "root (staff)" in old_page and f"staff:{root.id}" not in old_page
    new_page = staff.get(admin_path("calculation", rerun.id)).content.decode()
    assert "Rerun of" in new_page and f"{admin_path('calculation', failed.id)}" in new_page


def test_a_workflow_run_links_to_its_flow_run_and_is_canceled_from_an_action(staff: Client, alice_id: int) -> None:
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    run = actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w")
    page = staff.get(f"/admin/calculations/workflowrun/{run.id}/change/").content.decode()
    assert f"/runs/flow-run/{run.flow_run_id}" in page
    staff.post("/admin/calculations/workflowrun/", {"action": "cancel", "_selected_action": [str(run.id)]})
    assert WorkflowRun.objects.get(id=run.id).state == "CANCELING"


def test_a_workflow_runs_page_shows_what_its_flow_returned(staff: Client, alice_id: int) -> None:
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w")
    actions.do_end_workflow_run(run.id, 1, AttemptEnd.SUCCEEDED, result={"hits": ["<b>1</b>"]})
    page = staff.get(f"/admin/calculations/workflowrun/{run.id}/change/").content.decode()
    assert "Result (what the flow returned)" in page
    assert "&quot;hits&quot;: [\n    &quot;&lt;b&gt;1&lt;/b&gt;&quot;" in page  # indented, and escaped


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


def _blob(content: bytes) -> str:
    return get_storage().put(io.BytesIO(content)).sha256


def _complete(alice: ApiClient, uploaded: Upload, stderr: bytes) -> Calculation:
    """An obabel calculation as the worker leaves it: run in a container, its output and logs stored."""
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "use_cache": False}
    calc = Calculation.objects.get(id=alice.post("/tools/obabel/calculations", body).json()["id"])
    actions.do_start_calculation(calc.id, 1, flow_run_id=uuid4(), backend="container", host="node-7", workdir="/w/1")
    argv = ["obabel", "/w/1/inputs/m.smi", "-O", "/w/1/outputs/molecules.sdf"]
    actions.do_mark_running(
        calc.id, 1, job_id="c0ffee", argv=argv, executable=None, image="emgapi/obabel:3.1.1", image_digest="sha256:d1g"
    )
    output = b"SDF\n$$$$\n"
    outcome = actions.JobOutcome(0, {"max_rss_kb": 5120.0, "user_seconds": 0.25}, _blob(b"out\n"), _blob(stderr))
    blob = actions.OutputBlob("molecules", "molecules.sdf", _blob(output), len(output))
    return actions.do_end_attempt(calc.id, 1, AttemptEnd.SUCCEEDED, outputs=[blob], outcome=outcome)


def test_a_calculations_page_shows_its_provenance_outputs_stderr_tail_and_actors_by_name(
    staff: Client, alice: ApiClient, uploaded: Upload, alice_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().admin, "log_tail_bytes", 1024)
    stderr = b"".join(b"line %04d of the tool's stderr\n" % i for i in range(200)) + b"1 molecule converted\n"
    calc = _complete(alice, uploaded, stderr)
    output = File.objects.get(produced_by=calc)
    page = staff.get(admin_path("calculation", calc.id)).content.decode()

    # provenance, as tables: the argv as one command line, the image and its digest, each sha256, usage
    assert "obabel /w/1/inputs/m.smi -O /w/1/outputs/molecules.sdf" in page
    assert "emgapi/obabel:3.1.1" in page and "sha256:d1g" in page
    assert calc.provenance["inputs"]["molecules"] in page and output.sha256 in page
    assert "usage max_rss_kb" in page and "5120.0" in page and "node-7" in page
    assert '"attempts": [' not in page  # not one JSON blob
    # its output: its page and its download through the admin
    assert admin_path("file", output.id) in page
    assert reverse("admin:calculations_file_download", args=[output.id]) in page
    # the tail of its stderr (the setting's last bytes), and a link to the whole
    assert "1 molecule converted" in page and "line 0199" in page and "line 0000" not in page
    assert reverse("admin:calculations_calculation_log", args=[calc.id, "stderr"]) in page
    # actors by username; no TES section on a tool's calculation
    assert ">alice<" in page and f"user:{alice_id}" not in page
    assert 'id="tes-group"' not in page

    whole = staff.get(reverse("admin:calculations_calculation_log", args=[calc.id, "stderr"]))
    assert whole.getvalue() == stderr
    assert whole["Content-Disposition"].startswith("inline;")


def test_the_output_link_lands_on_a_page_with_its_download_and_its_tools_stderr(
    staff: Client, alice: ApiClient, uploaded: Upload
) -> None:
    calc = _complete(alice, uploaded, b"1 molecule converted\n")
    output = File.objects.get(produced_by=calc)
    page = staff.get(admin_path("file", output.id)).content.decode()
    assert "molecules.sdf" in page and "1 molecule converted" in page
    assert admin_path("calculation", calc.id) in page
    download = staff.get(reverse("admin:calculations_file_download", args=[output.id]))
    assert download.status_code == 200 and download.getvalue() == b"SDF\n$$$$\n"
    assert download["Content-Disposition"] == "attachment; filename=\"molecules.sdf\"; filename*=UTF-8''molecules.sdf"
    assert download["Content-Length"] == str(output.size)


def test_downloads_are_for_staff_only(alice: ApiClient, uploaded: Upload, alice_id: int) -> None:
    calc = _complete(alice, uploaded, b"secret stderr\n")
    output = File.objects.get(produced_by=calc)
    urls = [
        reverse("admin:calculations_file_download", args=[output.id]),
        reverse("admin:calculations_calculation_log", args=[calc.id, "stderr"]),
        admin_path("calculation", calc.id),
    ]
    owner = Client()  # the file's own owner, signed in, but not staff
    owner.force_login(get_user_model().objects.get(id=alice_id))
    for client in (Client(), owner):
        for url in urls:
            answer = client.get(url)
            assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/"), url
            assert (
                not getattr(answer, "streaming", False)
                and b"secret" not in answer.content
                and b"SDF" not in answer.content
            )


def test_a_tes_tasks_page_has_its_tes_section(staff: Client, alice: ApiClient, alice_token: str) -> None:
    task = {"name": "sectioned", "executors": [{"image": "emgapi/obabel:3.1.1", "command": ["obabel", "-V"]}]}
    tes = Client(headers={"Authorization": f"Bearer {alice_token}"})
    task_id = tes.post("/ga4gh/tes/v1/tasks", task, content_type="application/json").json()["id"]
    page = staff.get(admin_path("calculation", task_id)).content.decode()
    assert 'id="tes-group"' in page and "TES task sectioned" in page


def test_admin_links_are_the_admins_own_urls() -> None:
    some = uuid4()
    assert admin_path("calculation", some) == reverse("admin:calculations_calculation_change", args=[some])
    assert admin_path("file", some) == reverse("admin:calculations_file_change", args=[some])
    assert admin_path("workflowrun", some) == reverse("admin:calculations_workflowrun_change", args=[some])
    assert file_download_url(some) == get_settings().public_url.rstrip("/") + reverse(
        "admin:calculations_file_download", args=[some]
    )
    assert admin_url("calculation", some).startswith(get_settings().public_url)
    assert isinstance(some, UUID)


def test_runs_are_not_deleted_from_the_admin(staff: Client, alice: ApiClient, uploaded: Upload, alice_id: int) -> None:
    """A row deleted by hand would take its history and outputs' provenance with it, past the actions."""
    calc = _complete(alice, uploaded, b"done\n")
    run = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    for path in (f"calculation/{calc.id}", f"workflowrun/{run.id}"):
        assert staff.get(f"/admin/calculations/{path}/delete/").status_code == 403
    assert Calculation.objects.filter(id=calc.id).exists() and WorkflowRun.objects.filter(id=run.id).exists()
