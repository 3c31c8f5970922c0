"""Every endpoint through the real URL routing: auth, isolation (404 for others' objects), bad input."""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.test import Client

from calculations.states import RunState
from conftest import ApiClient
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db
Upload = Callable[[str, bytes], str]


def submit(
    client: ApiClient, tool: str, inputs: dict[str, str], params: dict[str, Any] | None = None, **extra: object
) -> Any:
    return client.post(f"/tools/{tool}/calculations", {"inputs": inputs, "params": params or {}, **extra})


@pytest.mark.parametrize(  # the same ids in every process (each pytest-xdist worker collects the tests)
    "path",
    ["/files", f"/files/{UUID(int=7)}", "/tools", "/tools/prodigal", "/calculations", f"/calculations/{UUID(int=8)}"],
)
def test_every_endpoint_requires_a_token(anonymous: ApiClient, path: str) -> None:
    response = anonymous.get(path)
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_a_wrong_token_is_refused(db: None) -> None:
    assert ApiClient("emg_not-a-token").get("/files").status_code == 401


def test_upload_then_read_back(alice: ApiClient) -> None:
    response = alice.upload("../../etc/evil\x07name.fna", b">a\nACGT\n")
    assert response.status_code == 201
    file = response.json()
    assert file["name"] in {"evil_name.fna", "evilname.fna"}  # no directories, no control characters
    assert file["size"] == 8
    assert file["sha256"] == hashlib.sha256(b">a\nACGT\n").hexdigest()
    assert alice.get(f"/files/{file['id']}").json()["id"] == file["id"]
    content = alice.get(f"/files/{file['id']}/content")
    assert b"".join(content.streaming_content) == b">a\nACGT\n"
    assert [f["id"] for f in alice.get("/files").json()["items"]] == [file["id"]]


def _stored_blobs() -> set[Path]:
    root = get_settings().blob_root
    return {path for path in root.rglob("*") if path.is_file() and ".incoming" not in path.parts}


def test_identical_uploads_share_one_blob(alice: ApiClient, bob: ApiClient) -> None:
    before = _stored_blobs()
    first = alice.upload("a.txt", b"same bytes, stored once").json()
    second = bob.upload("b.txt", b"same bytes, stored once").json()
    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]
    added = _stored_blobs() - before
    assert [path.name for path in added] == [first["sha256"]]  # two users' files, one blob


def test_others_files_and_calculations_are_404(alice: ApiClient, bob: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    calc_id = submit(alice, "obabel", {"molecules": file_id}).json()["id"]
    for path in (f"/files/{file_id}", f"/files/{file_id}/content", f"/calculations/{calc_id}",
                 f"/calculations/{calc_id}/logs"):  # fmt: skip
        response = bob.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    assert bob.post(f"/calculations/{calc_id}/cancel").status_code == 404
    assert bob.get("/files").json()["count"] == 0
    assert bob.get("/calculations").json()["count"] == 0
    # nor can bob use alice's file as an input
    response = submit(bob, "obabel", {"molecules": file_id})
    assert response.status_code == 422
    assert f"file {file_id} not found" in response.json()["detail"]


def test_tools_are_listed_with_their_schemas(alice: ApiClient) -> None:
    names = [tool["name"] for tool in alice.get("/tools").json()]
    assert {"prodigal", "hmmsearch", "obabel"} <= set(names)
    prodigal = alice.get("/tools/prodigal").json()
    assert prodigal["params_schema"]["properties"]["mode"]["enum"] == ["single", "meta"]
    assert [role["name"] for role in prodigal["inputs"]] == ["contigs"]
    assert {role["name"] for role in prodigal["outputs"]} == {"proteins", "genes"}
    assert prodigal["resources"]["cpus"] == 1
    assert prodigal["backends"] == ["local", "container", "slurm"]  # all enabled in the test settings
    assert prodigal["default_backend"] == "local" and prodigal["image"] == "emgapi/prodigal:2.6.3"
    missing = alice.get("/tools/blastx")
    assert missing.status_code == 404 and "unknown tool 'blastx'" in missing.json()["detail"]


def test_openapi_documents_one_typed_endpoint_per_tool(alice: ApiClient) -> None:
    schema = alice.client.get("/api/v2/openapi.json").json()
    assert "/api/v2/tools/prodigal/calculations" in schema["paths"]
    assert "ProdigalParams" in schema["components"]["schemas"]


@pytest.mark.parametrize(
    ("tool", "inputs", "params", "status", "message"),
    [
        ("blastx", {}, {}, 404, "unknown tool 'blastx'"),
        ("prodigal", {}, {}, 422, "inputs.contigs: Field required"),
        ("prodigal", {"contigs": "FILE", "reads": "FILE"}, {}, 422, "inputs.reads: unknown field"),
        ("prodigal", {"contigs": "FILE"}, {"mode": "closed"}, 422, "params.mode: Input should be 'single' or 'meta'"),
        ("prodigal", {"contigs": "FILE"}, {"translation_table": 7}, 422, "translation_table 7 is not one"),
        ("prodigal", {"contigs": "NOT-A-UUID"}, {}, 422, "inputs.contigs: Input should be a valid UUID"),
        ("prodigal", {"contigs": str(uuid4())}, {}, 422, "not found"),
        ("prodigal", {"contigs": "TEXT"}, {}, 422, "is not FASTA"),
        ("prodigal", {"contigs": "EMPTY"}, {}, 422, "is empty"),
        ("prodigal", {"contigs": "BINARY"}, {}, 422, "is binary"),
        ("hmmsearch", {"profile": "FILE", "sequences": "FILE"}, {}, 422, "is not an HMMER3 profile"),
        ("obabel", {"molecules": "TEXT"}, {}, 422, "cannot tell the molecule format of 'notes.txt'"),
        ("obabel", {"molecules": "SMILES"}, {"output_format": "png"}, 422, "params.output_format"),
    ],
)
def test_bad_submissions_say_what_is_wrong(
    alice: ApiClient,
    uploaded: Upload,
    tool: str,
    inputs: dict[str, str],
    params: dict[str, Any],
    status: int,
    message: str,
) -> None:
    files = {
        "FILE": uploaded("g.fna", b">c\nACGT\n"),
        "TEXT": uploaded("notes.txt", b"hello\n"),
        "EMPTY": uploaded("empty.fna", b""),
        "BINARY": uploaded("x.fna", b"\x00\x01\x02"),
        "SMILES": uploaded("m.smi", b"CCO\n"),
    }
    response = submit(alice, tool, {role: files.get(value, value) for role, value in inputs.items()}, params)
    assert response.status_code == status, response.content
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("request_backend", "enabled", "default", "status", "outcome"),
    [
        (None, ["local", "container", "slurm"], None, 202, "local"),  # the tool's default
        ("slurm", ["local", "container", "slurm"], None, 202, "slurm"),  # the request's choice
        (None, ["local", "container", "slurm"], "container", 202, "container"),  # the deployment's default
        (None, ["slurm"], None, 202, "slurm"),  # the only backend this deployment offers
        ("slurm", ["local"], None, 422, "backend: backend 'slurm' is not enabled on this deployment (enabled: local)"),
        ("lsf", ["local"], None, 422, "backend: Input should be 'local', 'container' or 'slurm'"),
    ],
)
def test_the_backend_is_chosen_per_request_deployment_and_tool(
    alice: ApiClient,
    uploaded: Upload,
    monkeypatch: pytest.MonkeyPatch,
    request_backend: str | None,
    enabled: list[str],
    default: str | None,
    status: int,
    outcome: str,
) -> None:
    from emgapiv2.config import get_settings

    monkeypatch.setattr(get_settings().execution, "enabled", enabled)
    monkeypatch.setattr(get_settings().execution, "default", default)
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {}, "backend": request_backend}
    response = alice.post("/tools/obabel/calculations", body)
    assert response.status_code == status, response.content
    if status == 202:
        assert response.json()["backend"] == outcome
    else:
        assert outcome in response.json()["detail"]


def test_a_tool_without_an_image_cannot_run_in_a_container(alice: ApiClient, uploaded: Upload) -> None:
    from dataclasses import replace

    from calculations.actions import check_create_calculation
    from calculations.errors import InvalidInput
    from calculations.tools import get_registry

    registry = get_registry()
    original = registry["obabel"]
    registry["obabel"] = replace(original, image=None)
    try:
        file_id = UUID(uploaded("m.smi", b"CCO\n"))
        user_id = alice.get("/calculations").wsgi_request.auth.id
        with pytest.raises(InvalidInput, match="cannot run on backend 'container'; it supports local, slurm"):
            check_create_calculation(user_id, "obabel", inputs={"molecules": file_id}, params={}, backend="container")
    finally:
        registry["obabel"] = original


def test_submission_is_queued_and_listed(alice: ApiClient, uploaded: Upload) -> None:
    response = submit(alice, "obabel", {"molecules": uploaded("m.smi", b"CCO\n")}, {"output_format": "inchikey"})
    assert response.status_code == 202
    calc = response.json()
    assert calc["state"] == "QUEUED" and calc["tool_version"] == "3.1.1"
    assert calc["params"] == {"input_format": None, "output_format": "inchikey", "gen3d": False}
    assert calc["provenance"]["inputs"]["molecules"]
    listed = alice.get("/calculations", state="QUEUED", tool="obabel").json()
    assert [c["id"] for c in listed["items"]] == [calc["id"]]
    assert alice.get("/calculations", state="COMPLETE").json()["count"] == 0
    assert alice.get("/calculations", tool="prodigal").json()["count"] == 0
    assert alice.get("/calculations", state="BOGUS").status_code == 422


def test_identical_submission_follows_the_one_in_flight(alice: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    first = submit(alice, "obabel", {"molecules": file_id}).json()
    second = submit(alice, "obabel", {"molecules": file_id}).json()
    assert second["cached_from"] == first["id"] and second["state"] == "QUEUED"
    opted_out = submit(alice, "obabel", {"molecules": file_id}, use_cache=False).json()
    assert opted_out["cached_from"] is None


def test_identical_submission_after_completion_is_answered_from_the_cache(
    alice: ApiClient, bob: ApiClient, uploaded: Upload, alice_id: int
) -> None:
    from calculations.actions import (
        JobOutcome,
        OutputBlob,
        do_end_attempt,
        do_mark_running,
        do_start_calculation,
    )
    from calculations.policies import AttemptEnd
    from calculations.storage import get_storage

    file_id = uploaded("m.smi", b"CCO\n")
    first = submit(alice, "obabel", {"molecules": file_id}).json()
    follower = submit(alice, "obabel", {"molecules": file_id}).json()
    blob = get_storage().put_path(__import__("pathlib").Path(__file__))
    workdir = f"/var/work/{first['id']}/attempt-1/work"
    do_start_calculation(first["id"], 1, flow_run_id=None, backend="local", host="h", workdir=workdir)
    do_mark_running(first["id"], 1, job_id="1", argv=["obabel"], executable=None)
    outcome = JobOutcome(0, {}, None, None)
    do_end_attempt(
        first["id"], 1, AttemptEnd.SUCCEEDED, outputs=[OutputBlob("molecules", "m.sdf", blob.sha256, blob.size)],
        outcome=outcome,
    )  # fmt: skip

    # the follower took over the outcome, with its own output file rows
    follower = alice.get(f"/calculations/{follower['id']}").json()
    assert follower["state"] == "COMPLETE"
    original = alice.get(f"/calculations/{first['id']}").json()
    assert follower["outputs"]["molecules"] != original["outputs"]["molecules"]

    response = submit(alice, "obabel", {"molecules": file_id})
    assert response.status_code == 200
    cached = response.json()
    assert cached["state"] == RunState.COMPLETE and cached["cached_from"] == first["id"]
    output = alice.get(f"/files/{cached['outputs']['molecules'][0]}").json()
    assert output["sha256"] == blob.sha256 and output["produced_by"] == cached["id"]

    # another user's identical submission is a cache hit too, that never shows alice's ids
    bobs_file = bob.upload("mine.smi", b"CCO\n").json()["id"]
    bobs = submit(bob, "obabel", {"molecules": bobs_file})
    assert bobs.status_code == 200
    shared = bobs.json()
    assert shared["cache_hit"] is True and shared["cached_from"] is None
    assert first["id"] not in json.dumps(bob.get(f"/calculations/{shared['id']}").json())
    assert cached["cache_hit"] is True and original["cache_hit"] is False


def test_cancel(alice: ApiClient, uploaded: Upload) -> None:
    calc = submit(alice, "obabel", {"molecules": uploaded("m.smi", b"CCO\n")}).json()
    response = alice.post(f"/calculations/{calc['id']}/cancel")
    assert response.status_code == 202 and response.json()["state"] == "CANCELED"
    again = alice.post(f"/calculations/{calc['id']}/cancel")
    assert again.status_code == 409 and "already CANCELED" in again.json()["detail"]


def test_logs_of_a_calculation_that_has_not_run_are_empty(alice: ApiClient, uploaded: Upload) -> None:
    calc = submit(alice, "obabel", {"molecules": uploaded("m.smi", b"CCO\n")}).json()
    assert alice.get(f"/calculations/{calc['id']}/logs").json() == {
        "attempt": 1, "stdout": "", "stderr": "", "truncated": False
    }  # fmt: skip


def test_malformed_json_is_a_4xx(alice: ApiClient) -> None:
    response = alice.client.post("/api/v2/tools/prodigal/calculations", "{not json", content_type="application/json")
    assert 400 <= response.status_code < 500


def test_health_reports_each_dependency(anonymous: ApiClient) -> None:
    response = anonymous.get("/health")
    body = response.json()
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    # no Prefect server runs for the unit tests
    assert response.status_code == 503 and body["status"] == "degraded" and not body["checks"]["prefect"]["ok"]


def test_liveness_answers_while_a_dependency_is_down(anonymous: ApiClient) -> None:
    """The liveness probe asks no dependency, and the readiness probe only what the API cannot serve
    without: with Prefect down /health says so (503), but the API is alive and ready (it queues
    submissions until Prefect is back), so a Prefect restart takes no API pod out of the load balancer."""
    assert anonymous.get("/health").status_code == 503
    response = anonymous.get("/health/live")
    assert response.status_code == 200 and response.json() == {"status": "ok", "checks": {}}
    ready = anonymous.get("/health/ready")
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"database", "storage"}


def test_readiness_fails_without_the_storage(anonymous: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from calculations.storage import get_storage

    def broken() -> None:
        raise OSError("unreachable")

    monkeypatch.setattr(get_storage(), "check", broken)
    response = anonymous.get("/health/ready")
    assert response.status_code == 503 and response.json()["checks"]["storage"]["ok"] is False


def test_health_says_what_fails_but_never_how(anonymous: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may ask: an error's text (hosts, accounts, paths) stays in the API's log."""
    from calculations.storage import get_storage

    def broken() -> None:
        raise OSError("cannot reach s3://secret-bucket at 10.1.2.3 as user backup-admin")

    monkeypatch.setattr(get_storage(), "check", broken)
    body = anonymous.get("/health").json()
    assert not body["checks"]["storage"]["ok"] and "OSError" in body["checks"]["storage"]["detail"]
    text = json.dumps(body)
    assert "secret-bucket" not in text and "backup-admin" not in text and "127.0.0.1" not in text


UNKNOWN_API_PATHS = [
    "/api/v2/nosuch", "/api/v2/", "/api/v2", "/api", "/api/", "/api/v3/files", "/api/v2/files/",
    "/api/v2/files/x/y", "/ga4gh/tes/v1/nosuch", "/ga4gh/tes/v1/", "/ga4gh/tes/v1", "/ga4gh/tes", "/ga4gh/tes/v2/tasks",
]  # fmt: skip


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
def test_an_unknown_path_under_an_api_is_a_json_404(alice_token: str, path: str) -> None:
    # CSRF checks on, as in a browser: an unknown path is not found, whatever the method
    client = Client(headers={"Authorization": f"Bearer {alice_token}"}, enforce_csrf_checks=True)
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = client.generic(method, path, b"{}", content_type="application/json")
        assert response.status_code == 404, (method, path, response.status_code)
        assert response["Content-Type"] == "application/json", (method, path)
        assert "not found" in response.json()["detail"]
    assert Client().get(path).status_code == 404  # without a token too


def test_other_unknown_paths_keep_djangos_own_answers(db: None) -> None:
    assert Client().get("/nosuch")["Content-Type"].startswith("text/html")
    assert Client().get("/apiary").status_code == 404 and Client().get("/apiary")["Content-Type"].startswith("text/")
    assert Client().get("/admin").status_code == 301
