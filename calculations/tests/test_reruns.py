"""A user's rerun that verifies (POST /calculations/{id}/rerun, /workflow-runs/{id}/rerun): the same
tool version, image and inputs, never the cache, and a verdict once it ended; refused with a 409 that
says what is gone. The worker's side is played by the actions it calls."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from calculations import actions
from calculations.admin_links import admin_path
from calculations.images import register_image_lookup
from calculations.models import Calculation, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.storage import get_storage
from conftest import ApiClient

Upload = Callable[[str, bytes], str]
SDF = b"ethanol\n  OpenBabel\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n"


def _blob(role: str, name: str, content: bytes) -> actions.OutputBlob:
    return actions.OutputBlob(role, name, get_storage().put(io.BytesIO(content)).sha256, len(content))


def _run(
    calculation_id: str | UUID,
    outputs: list[actions.OutputBlob],
    *,
    end: AttemptEnd = AttemptEnd.SUCCEEDED,
    image_digest: str | None = None,
) -> Calculation:
    """What the worker does: start, run (in an image, if a digest is given), end with these outputs."""
    calc_id = UUID(str(calculation_id))
    backend = "container" if image_digest else "local"
    actions.do_start_calculation(calc_id, 1, flow_run_id=uuid4(), backend=backend, host="h", workdir="/w")
    image = "emgapi/obabel:3.1.1" if image_digest else None
    actions.do_mark_running(
        calc_id, 1, job_id="1", argv=["obabel"], executable="obabel", image=image, image_digest=image_digest
    )
    outcome = actions.JobOutcome(0 if outputs else 1, {}, None, None)
    return actions.do_end_attempt(calc_id, 1, end, outputs=outputs, message="" if outputs else "boom", outcome=outcome)


def _converted(alice: ApiClient, uploaded: Upload, content: bytes = SDF) -> Calculation:
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {"output_format": "sdf"}}
    calc_id = alice.post("/tools/obabel/calculations", body).json()["id"]
    return _run(calc_id, [_blob("molecules", "molecules.sdf", content)])


def _rerun(alice: ApiClient, calc: Calculation) -> dict[str, Any]:
    response = alice.post(f"/calculations/{calc.id}/rerun")
    assert response.status_code == 202, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_rerun_runs_again_without_the_cache_and_its_verdict_says_identical(
    alice: ApiClient, uploaded: Upload
) -> None:
    original = _converted(alice, uploaded)
    rerun = _rerun(alice, original)
    # an identical COMPLETE calculation exists: only a rerun that skips the cache is QUEUED
    assert (rerun["state"], rerun["rerun_of"], rerun["cache_hit"], rerun["verdict"]) == (
        "QUEUED", str(original.id), False, None
    )  # fmt: skip
    assert rerun["inputs"] == {"molecules": str(original.inputs.get().file_id)}
    _run(rerun["id"], [_blob("molecules", "molecules.sdf", SDF)])
    verdict = alice.get(f"/calculations/{rerun['id']}").json()["verdict"]
    assert verdict["outcome"] == "identical"
    assert verdict["summary"] == "identical: the output has the expected sha256"
    [output] = verdict["outputs"]
    assert (output["role"], output["name"], output["status"]) == ("molecules", "molecules.sdf", "identical")
    events = list(original.events.values_list("reason", flat=True))
    assert f"rerun to verify it as calculation {rerun['id']}" in events


def test_an_output_that_differs_is_different_with_both_sizes(alice: ApiClient, uploaded: Upload) -> None:
    original = _converted(alice, uploaded)
    rerun = _rerun(alice, original)
    _run(rerun["id"], [_blob("molecules", "molecules.sdf", SDF + b"extra line\n")])
    verdict = alice.get(f"/calculations/{rerun['id']}").json()["verdict"]
    assert verdict["outcome"] == "different"
    size = len(SDF)
    assert verdict["summary"] == (
        f"different: molecules/molecules.sdf different ({size} bytes expected, {size + 11} bytes now)"
    )
    [output] = verdict["outputs"]
    assert (output["expected_size"], output["actual_size"], output["note"]) == (size, size + 11, "")
    assert output["expected_sha256"] != output["actual_sha256"]


def test_a_missing_and_an_extra_output_are_named(alice: ApiClient, uploaded: Upload) -> None:
    original = _converted(alice, uploaded)
    rerun = _rerun(alice, original)
    _run(rerun["id"], [_blob("molecules", "molecules.mol", SDF)])
    verdict = alice.get(f"/calculations/{rerun['id']}").json()["verdict"]
    assert verdict["outcome"] == "different"
    assert [(o["name"], o["status"]) for o in verdict["outputs"]] == [
        ("molecules.mol", "extra"),
        ("molecules.sdf", "missing"),
    ]
    assert "molecules/molecules.sdf missing" in verdict["summary"]


def test_a_rerun_that_fails_is_not_reproduced(alice: ApiClient, uploaded: Upload) -> None:
    rerun = _rerun(alice, _converted(alice, uploaded))
    _run(rerun["id"], [], end=AttemptEnd.TOOL_FAILED)
    verdict = alice.get(f"/calculations/{rerun['id']}").json()["verdict"]
    assert verdict == {
        "outcome": "not reproduced",
        "summary": "not reproduced: the rerun ended EXECUTOR_ERROR: boom",
        "outputs": [],
        "steps": [],
    }


def test_a_nondeterministic_tool_differs_naming_the_output_and_a_timestamp_is_expected_to_differ(
    alice: ApiClient, uploaded: Upload
) -> None:
    body = {"inputs": {"text": uploaded("t.txt", b"hello\n")}, "params": {}}
    first = alice.post("/tools/dice/calculations", body).json()["id"]
    original = _run(first, [_blob("roll", "roll.txt", b"1 2\nhello\n"), _blob("stamp", "stamp.txt", b"1\n")])
    rerun = _rerun(alice, original)
    _run(rerun["id"], [_blob("roll", "roll.txt", b"3 4\nhello\n"), _blob("stamp", "stamp.txt", b"2\n")])
    verdict = alice.get(f"/calculations/{rerun['id']}").json()["verdict"]
    assert verdict["outcome"] == "differs"
    assert verdict["summary"] == (
        "differs: roll/roll.txt differs (the tool declares it nondeterministic); "
        "stamp/stamp.txt expected to differ: carries timestamps"
    )
    assert [(o["role"], o["status"]) for o in verdict["outputs"]] == [
        ("roll", "differs"),
        ("stamp", "expected to differ"),
    ]
    assert alice.get("/tools/dice").json()["nondeterministic"] is True


def test_another_users_calculation_and_run_are_404(alice: ApiClient, bob: ApiClient, uploaded: Upload) -> None:
    calc = _converted(alice, uploaded)
    response = bob.post(f"/calculations/{calc.id}/rerun")
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    run = WorkflowRun.objects.create(owner=calc.owner, workflow="pipeline", params={}, state="COMPLETE")
    assert bob.post(f"/workflow-runs/{run.id}/rerun").status_code == 404
    assert Calculation.objects.count() == 1 and WorkflowRun.objects.count() == 1


@pytest.fixture
def images() -> Iterator[dict[str, str]]:
    """The container engine's images by name, as the rerun's check sees them."""
    held: dict[str, str] = {}
    previous = register_image_lookup(held.get)
    yield held
    register_image_lookup(previous)


def test_a_tool_version_or_an_image_no_longer_available_is_a_409_saying_which(
    alice: ApiClient, uploaded: Upload, images: dict[str, str]
) -> None:
    old = _converted(alice, uploaded)
    Calculation.objects.filter(id=old.id).update(tool_version="2.9.9")
    response = alice.post(f"/calculations/{old.id}/rerun")
    assert response.status_code == 409
    assert response.json()["detail"] == "obabel 2.9.9 is not registered here (have 3.1.1)"

    body = {"inputs": {"molecules": uploaded("n.smi", b"CCN\n")}, "params": {"output_format": "sdf"}}
    in_image = alice.post("/tools/obabel/calculations", body).json()["id"]
    _run(in_image, [_blob("molecules", "molecules.sdf", SDF)], image_digest="sha256:" + "a" * 64)
    answers = {
        None: "(the container engine holds no emgapi/obabel:3.1.1)",
        "sha256:" + "b" * 64: f"(the tool's image is now sha256:{'b' * 64})",
    }
    for held, why in answers.items():
        images.clear()
        if held:
            images["emgapi/obabel:3.1.1"] = held
        response = alice.post(f"/calculations/{in_image}/rerun")
        assert response.status_code == 409
        assert response.json()["detail"] == f"image emgapi/obabel:3.1.1@sha256:{'a' * 64} is not available {why}"
    images["emgapi/obabel:3.1.1"] = "sha256:" + "a" * 64
    same = _rerun(alice, Calculation.objects.get(id=in_image))
    assert same["backend"] == "container" and same["rerun_of"] == in_image


def test_a_backend_no_longer_enabled_is_a_409(alice: ApiClient, uploaded: Upload) -> None:
    old = _converted(alice, uploaded)
    Calculation.objects.filter(id=old.id).update(backend="nowhere")
    response = alice.post(f"/calculations/{old.id}/rerun")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"calculation {old.id} cannot be run again as it ran: backend: ")


def test_a_deleted_input_or_a_run_in_flight_is_a_409(alice: ApiClient, uploaded: Upload) -> None:
    calc = _converted(alice, uploaded)
    file_id = calc.inputs.get().file_id
    assert alice.client.delete(f"/api/v2/files/{file_id}").status_code == 204
    response = alice.post(f"/calculations/{calc.id}/rerun")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith("input 'molecules' (sha256 ") and "was deleted since" in detail

    body = {"inputs": {"molecules": uploaded("q.smi", b"CCC\n")}, "params": {}, "use_cache": False}
    queued = alice.post("/tools/obabel/calculations", body).json()["id"]
    response = alice.post(f"/calculations/{queued}/rerun")
    assert response.status_code == 409 and "it is rerun once it ended" in response.json()["detail"]


def _two_step_run(alice: ApiClient, alice_id: int, uploaded: Upload) -> WorkflowRun:
    """A COMPLETE pipeline run of two steps (convert, then convert its output again), played as the
    flow and the worker would."""
    file_id = uploaded("m.smi", b"CCO\n")
    steps = {
        "convert": {"tool": "obabel", "params": {"output_format": "can"}, "inputs": {"molecules": f"file:{file_id}"}},
        "again": {"tool": "obabel", "params": {"output_format": "smi"}, "inputs": {"molecules": "convert.molecules"}},
    }
    created = alice.post("/workflows/pipeline/runs", {"params": {"steps": steps}})
    assert created.status_code == 202, created.content
    return _play(UUID(created.json()["id"]), file_id, {"convert": b"CCO\t1\n", "again": b"CCO\t2\n"})


def _play(run_id: UUID, file_id: str, outputs: dict[str, bytes]) -> WorkflowRun:
    actions.do_start_workflow_run(run_id, 1, flow_run_id=uuid4(), worker="w")
    source = UUID(file_id)
    for name, content in outputs.items():
        fmt = "can" if name == "convert" else "smi"
        step = actions.do_create_step(
            run_id, 1, step=name, index=0, tool="obabel", inputs={"molecules": source}, params={"output_format": fmt}
        )
        assert step.state == "QUEUED", step.state  # a verifying run's steps never come from the cache
        done = _run(step.id, [_blob("molecules", f"molecules.{fmt}", content)])
        source = done.output_files.get().id
    return actions.do_end_workflow_run(run_id, 1, AttemptEnd.SUCCEEDED)


def test_a_workflow_runs_rerun_is_verified_step_by_step(
    alice: ApiClient, alice_id: int, uploaded: Upload, workflow_catalogue: Any
) -> None:
    # the first run's steps run too: use_cache false everywhere, as a pipeline may ask
    original = _two_step_run(alice, alice_id, uploaded)
    assert original.state == "COMPLETE" and original.verdict is None
    response = alice.post(f"/workflow-runs/{original.id}/rerun")
    assert response.status_code == 202, response.content
    rerun = response.json()
    assert (rerun["state"], rerun["rerun_of"], rerun["verdict"]) == ("QUEUED", str(original.id), None)
    file_id = str(original.steps.get(step="convert").inputs.get().file_id)
    _play(UUID(rerun["id"]), file_id, {"convert": b"CCO\t1\n", "again": b"CCO\t2\n"})
    verdict = alice.get(f"/workflow-runs/{rerun['id']}").json()["verdict"]
    assert verdict["outcome"] == "identical"
    assert verdict["summary"] == "identical: all 2 steps reproduced their outputs"
    assert [(s["step"], s["index"], s["outcome"]) for s in verdict["steps"]] == [
        ("again", 0, "identical"),
        ("convert", 0, "identical"),
    ]

    # again, where the second step's output differs: that step is named, the first still identical
    third = alice.post(f"/workflow-runs/{original.id}/rerun").json()
    _play(UUID(third["id"]), file_id, {"convert": b"CCO\t1\n", "again": b"OCC\t2\n"})
    verdict = alice.get(f"/workflow-runs/{third['id']}").json()["verdict"]
    assert verdict["outcome"] == "different"
    assert verdict["summary"] == (
        "different: step again[0] different: molecules/molecules.smi different (6 bytes expected, 6 bytes now)"
    )
    assert [s["outcome"] for s in verdict["steps"]] == ["different", "identical"]


def test_a_workflow_run_not_complete_or_with_a_deleted_input_is_a_409(
    alice: ApiClient, alice_id: int, uploaded: Upload, workflow_catalogue: Any
) -> None:
    original = _two_step_run(alice, alice_id, uploaded)
    first = original.steps.get(step="convert")
    # the second step's input is the first's output: deleted, it is made again, so only the first's counts
    assert alice.client.delete(f"/api/v2/files/{first.output_files.get().id}").status_code == 204
    assert alice.post(f"/workflow-runs/{original.id}/rerun").status_code == 202
    assert alice.client.delete(f"/api/v2/files/{first.inputs.get().file_id}").status_code == 204
    response = alice.post(f"/workflow-runs/{original.id}/rerun")
    assert response.status_code == 409
    assert (
        "input 'molecules' (sha256 " in response.json()["detail"] and "of step convert[0]" in response.json()["detail"]
    )

    queued = actions.do_create_workflow_run(alice_id, "pipeline", {"steps": {}})
    response = alice.post(f"/workflow-runs/{queued.id}/rerun")
    assert response.status_code == 409 and "it is rerun once it ended" in response.json()["detail"]


def test_the_admin_shows_the_verdict(alice: ApiClient, alice_id: int, uploaded: Upload) -> None:
    rerun = _rerun(alice, _converted(alice, uploaded))
    _run(rerun["id"], [_blob("molecules", "molecules.sdf", SDF + b"x")])
    get_user_model().objects.create_superuser("root", password="a-long-password-1")
    staff = Client()
    staff.force_login(get_user_model().objects.get(username="root"))
    page = staff.get(admin_path("calculation", rerun["id"])).content.decode()
    assert "<strong>different</strong>" in page and "molecules.sdf" in page
    assert f"{len(SDF)} B" in page and f"{len(SDF) + 1} B" in page
