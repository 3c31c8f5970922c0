"""No user reaches another's data: every route of the OpenAPI schema, walked with a foreign object."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from django.core.files.uploadedfile import SimpleUploadedFile

from conftest import ApiClient

Upload = Callable[[str, bytes], str]


def _call(client: ApiClient, method: str, path: str, body: Any = None) -> Any:
    if method in ("get", "head"):
        return getattr(client.client, method)(path)
    data = b"" if body is None else json.dumps(body)
    return client.client.generic(method.upper(), path, data=data, content_type="application/json")


def _pipeline(file_id: str) -> dict[str, Any]:
    return {"params": {"steps": {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{file_id}"}}}}}


def test_every_route_answers_a_foreign_object_as_if_it_did_not_exist(
    alice: ApiClient, bob: ApiClient, uploaded: Upload, workflow_catalogue: Any, s3_storage: Any
) -> None:
    # on S3 storage, so that alice can have a presigned upload too
    file_id = uploaded("m.smi", b"CCO\n")
    notify = {"url": "http://93.184.216.34/hook", "events": ["QUEUED"]}  # a notification of hers at once
    submitted = {"inputs": {"molecules": file_id}, "params": {}, "notify": notify}
    calc_id = alice.post("/tools/obabel/calculations", submitted).json()["id"]
    run = alice.post("/workflows/pipeline/runs", _pipeline(file_id))
    assert run.status_code == 202, run.content
    upload = alice.post("/uploads", {"name": "big.fastq", "size": 10})
    assert upload.status_code == 201, upload.content
    alices = {
        "file_id": file_id,
        "calculation_id": calc_id,
        "workflow_run_id": run.json()["id"],
        "upload_id": upload.json()["id"],
        "notification_id": alice.get("/notifications").json()["items"][0]["id"],
    }
    schema = alice.client.get("/api/v2/openapi.json").json()
    walked = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            id_params = [
                p["name"] for p in operation.get("parameters", []) if p["in"] == "path" and p["name"] != "name"
            ]
            unknown = set(id_params) - set(alices)
            assert not unknown, f"{method.upper()} {path}: no foreign object for {unknown}; extend this test"
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if path == "/api/v2/crates":  # alice's run's crate, its input only hers: never bob's to use
                exported = alice.client.get(f"/api/v2/calculations/{calc_id}/crate?data=none")
                crate = b"".join(exported.streaming_content)  # type: ignore[attr-defined]
                as_bob = bob.client.post(path, {"crate": SimpleUploadedFile("run.crate.zip", crate)})
                assert as_bob.status_code == 422, as_bob.content
                assert as_bob.json()["problems"][0].startswith("missing input: input 'molecules'")
                walked.append(f"{method.upper()} {path}")
                continue
            if not id_params and (body_schema is None or path == "/api/v2/uploads"):
                continue  # a list, an upload or a tool description: nothing of alice's to name
            workflow = path.startswith("/api/v2/workflows/")
            foreign = missing = path.replace("{name}", "pipeline" if workflow else "obabel")
            for param in id_params:
                foreign = foreign.replace(f"{{{param}}}", alices[param])
                missing = missing.replace(f"{{{param}}}", str(uuid4()))
            body: dict[str, Any] | None = None
            other_body: dict[str, Any] | None = None
            if body_schema is not None and path.endswith("/resume"):  # the input a paused run waits for
                body = other_body = {"input": {}}
            elif body_schema is not None and path.endswith("/complete"):  # an upload's parts, as S3 holds them
                body = other_body = {}
            elif body_schema is not None and workflow:  # a pipeline naming alice's file
                body, other_body = _pipeline(file_id), _pipeline(str(uuid4()))
            elif body_schema is not None:  # a submission naming alice's file in every input role
                tool = foreign.split("/tools/")[1].split("/")[0]
                body = {"inputs": {role: file_id for role in _roles(alice, tool)}, "params": {}}
                other_body = _with_ids(body, str(uuid4()))
            as_bob = _call(bob, method, foreign, body)
            as_nobody = _call(bob, method, missing, other_body)
            assert as_bob.status_code in (404, 422), f"{method.upper()} {foreign}: {as_bob.status_code}"
            assert as_bob.status_code == as_nobody.status_code, f"{method.upper()} {path} tells alice's id apart"
            if method != "head":  # a HEAD answer has no body, only its status
                assert "not found" in as_bob.json()["detail"]
            walked.append(f"{method.upper()} {path}")
    # alice's objects are untouched and her lists are hers alone
    assert alice.get(f"/calculations/{calc_id}").json()["state"] == "QUEUED"
    assert alice.get(f"/workflow-runs/{alices['workflow_run_id']}").json()["state"] == "QUEUED"
    assert bob.get("/files").json()["count"] == bob.get("/calculations").json()["count"] == 0
    assert bob.get("/workflow-runs").json()["count"] == bob.get("/notifications").json()["count"] == 0
    assert alice.get(f"/uploads/{alices['upload_id']}").json()["state"] == "OPEN"
    # files/{id}, files/{id}/content, calculations/{id}, …/cancel, …/logs, submissions, workflow runs, uploads
    assert len(walked) >= 14, walked
    assert {"GET /api/v2/uploads/{upload_id}", "POST /api/v2/uploads/{upload_id}/complete"} <= set(walked)
    assert {
        "GET /api/v2/calculations/{calculation_id}/crate",
        "GET /api/v2/workflow-runs/{workflow_run_id}/crate",
    } <= set(walked)
    assert "POST /api/v2/crates" in walked
    assert "GET /api/v2/notifications/{notification_id}" in walked
    assert "GET /api/v2/workflow-runs/{workflow_run_id}/progress" in walked
    assert {
        "POST /api/v2/calculations/{calculation_id}/rerun",
        "POST /api/v2/workflow-runs/{workflow_run_id}/rerun",
    } <= set(walked)


def _roles(client: ApiClient, tool: str) -> list[str]:
    return [role["name"] for role in client.get(f"/tools/{tool}").json()["inputs"]]


def _with_ids(body: dict[str, Any], file_id: str) -> dict[str, Any]:
    return {**body, "inputs": {role: file_id for role in body["inputs"]}}


def _tes_task(file_id: str) -> dict[str, Any]:
    inputs = [{"path": "/data/m.smi", "url": f"emgapi://files/{file_id}"}]
    return {"inputs": inputs, "executors": [{"image": "emgapi/obabel:3.1.1", "command": ["obabel", "/data/m.smi"]}]}


def test_every_tes_route_answers_a_foreign_object_as_if_it_did_not_exist(
    alice: ApiClient, bob: ApiClient, uploaded: Upload
) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    created = _call(alice, "post", "/ga4gh/tes/v1/tasks", _tes_task(file_id))
    assert created.status_code == 200, created.content
    task_id = created.json()["id"]
    schema = alice.client.get("/ga4gh/tes/v1/openapi.json").json()
    walked = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            has_id = "{task_id}" in path
            if not has_id and "requestBody" not in operation:
                continue  # service-info, the list: nothing of alice's to name
            foreign, missing = path.replace("{task_id}", task_id), path.replace("{task_id}", str(uuid4()))
            as_bob = _call(bob, method, foreign, _tes_task(file_id))
            as_nobody = _call(bob, method, missing, _tes_task(str(uuid4())))
            assert as_bob.status_code == 404, f"{method.upper()} {foreign}: {as_bob.status_code}"
            assert as_bob.status_code == as_nobody.status_code
            assert "not found" in as_bob.json()["detail"]
            walked.append(f"{method.upper()} {path}")
    assert _call(alice, "get", f"/ga4gh/tes/v1/tasks/{task_id}").json()["state"] == "QUEUED"
    assert _call(bob, "get", "/ga4gh/tes/v1/tasks").json()["tasks"] == []
    assert len(walked) == 3, walked  # create naming alice's file, get, cancel
