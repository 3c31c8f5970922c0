"""GA4GH TES 1.1 at /ga4gh/tes/v1: what a TES client sends is accepted, refused with a reason, listed
and shown as the spec says (the run itself: workflows/tests/test_tes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from tes.models import ListTasksResponse, ServiceInfo, Task
from tes.utils import unmarshal

from calculations.models import Calculation, TesTask
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db
IMAGE = "emgapi/obabel:3.1.1"  # a registered tool's image: allowed by default
Upload = Callable[[str, bytes], str]


class Tes:
    def __init__(self, token: str | None) -> None:
        self.client = Client(headers={"Authorization": f"Bearer {token}"} if token else {})

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/ga4gh/tes/v1{path}", params)

    def post(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {})
        return self.client.post(f"/ga4gh/tes/v1{path}", data, content_type="application/json")


@pytest.fixture
def tes(alice_token: str) -> Tes:
    return Tes(alice_token)


def task(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "convert",
        "inputs": [{"path": "/data/in/m.smi", "content": "CCO\n"}],
        "outputs": [{"path": "/data/out/m.sdf", "url": "ethanol.sdf"}],
        "executors": [{"image": IMAGE, "command": ["obabel", "/data/in/m.smi", "-O", "/data/out/m.sdf"]}],
        "tags": {"project": "p1"},
    }
    return {**body, **changes}


def test_a_task_is_created_queued_and_is_a_calculation(tes: Tes, alice: Any) -> None:
    created = tes.post("/tasks", task())
    assert created.status_code == 200, created.content
    task_id = created.json()["id"]
    minimal = tes.get(f"/tasks/{task_id}")
    assert minimal.json() == {"id": task_id, "state": "QUEUED"}
    basic = tes.get(f"/tasks/{task_id}", view="BASIC").json()
    assert basic["name"] == "convert" and basic["tags"] == {"project": "p1"}
    assert basic["executors"][0]["command"][0] == "obabel"
    assert "content" not in basic["inputs"][0]  # BASIC leaves inline content out; FULL has it
    assert tes.get(f"/tasks/{task_id}", view="FULL").json()["inputs"][0]["content"] == "CCO\n"
    assert isinstance(unmarshal(basic, Task), Task)  # what py-tes reads, it can parse
    # the same calculation in the platform's own API
    calc = alice.get(f"/calculations/{task_id}").json()
    assert calc["tool"] == "ga4gh-tes" and calc["state"] == "QUEUED"
    assert alice.get("/calculations", tool="ga4gh-tes").json()["count"] == 1


def test_a_task_naming_a_file_by_its_api_url_or_emgapi_url(tes: Tes, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    for url in (f"emgapi://files/{file_id}", f"http://testserver/api/v2/files/{file_id}/content"):
        body = task(inputs=[{"path": "/data/in/m.smi", "url": url}])
        assert tes.post("/tasks", body).status_code == 200, url
    calc = Calculation.objects.order_by("-created_at").first()
    assert calc is not None and calc.inputs.get().file_id is not None


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"executors": []}, "executors"),
        ({"executor": [{"image": IMAGE, "command": ["true"]}]}, "unknown field"),
        ({"inputs": [{"path": "data/m.smi", "content": "x"}]}, "not an absolute path"),
        ({"inputs": [{"path": "/m.smi", "content": "x"}]}, "directly in /"),
        ({"inputs": [{"path": "/data/../etc/m.smi", "content": "x"}]}, "not a normalised path"),
        ({"inputs": [{"path": "/proc/x", "content": "x"}]}, "under /proc"),
        # not a URL, or one of this API's that names none of its files (a location elsewhere is accepted:
        # test_a_url_this_deployment_cannot_reach_is_accepted_and_the_task_will_say_why)
        ({"inputs": [{"path": "/data/m", "url": "data/m.smi"}]}, "'data/m.smi' names no file; use emgapi://files/<id>"),
        ({"inputs": [{"path": "/data/m", "url": "emgapi://calculations/x"}]}, "names no file"),
        ({"inputs": [{"path": "/data/m", "url": "http://testserver/api/v2/calculations/x"}]}, "names no file"),
        ({"inputs": [{"path": "/data/m"}]}, "give a url"),
        ({"inputs": [{"path": "/data/m", "type": "DIRECTORY", "url": "emgapi://files/x"}]}, "DIRECTORY inputs"),
        ({"outputs": [{"path": "/data/out/x", "url": "s3:x"}]}, "plain relative name"),
        ({"outputs": [{"path": "/data/out/*.txt"}]}, "path_prefix"),
        ({"resources": {"cpu_cores": 999}}, "cpu_cores"),
        ({"resources": {"disk_gb": 101}}, "resources.disk_gb: 101.0 is more than the 100.0"),
        ({"resources": {"backend_parameters": {"gpu": "1"}, "backend_parameters_strict": True}}, "'gpu'"),
        ({"volumes": ["/data:x"]}, "':' or ','"),
        ({"volumes": ["/data/" + "a" * 256]}, "longer than 255 bytes"),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"": "x"}}]}, "'' is not a variable name"),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"A": "b\x00c"}}]}, "NUL"),
        # a name that would be shell syntax in a Slurm job script
        (
            {"executors": [{"image": IMAGE, "command": ["true"], "env": {"OK": "1", "A;touch injected;B": "v"}}]},
            "executors[0].env: 'A;touch injected;B' is not a variable name",
        ),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"1A": "x"}}]}, "'1A' is not a variable"),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"A-B": "x"}}]}, "'A-B' is not a variable"),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"A" * 129: "x"}}]}, "is not a variable"),
        (
            {"executors": [{"image": IMAGE, "command": ["true"], "env": {f"V{i}": "" for i in range(129)}}]},
            "129 variables; the limit is 128",
        ),
        ({"executors": [{"image": IMAGE, "command": ["true"], "env": {"V": "x" * 70_000}}]}, "the limit is 65536"),
        # the names of stored outputs are file names, never paths
        ({"outputs": [{"path": "/data/out/x", "name": "../../x"}]}, "outputs[0].name: '../../x' is not a plain"),
        ({"outputs": [{"path": "/data/out/x", "name": "/abs/x"}]}, "outputs[0].name: '/abs/x' is not a plain"),
        ({"outputs": [{"path": "/data/out/x", "name": ".hidden"}]}, "outputs[0].name"),
        ({"outputs": [{"path": "/data/out/x", "name": "a\nb"}]}, "outputs[0].name"),
        ({"outputs": [{"path": "/data/out/x", "url": "../../x"}]}, "outputs[0].url: '../../x' is not a plain"),
        ({"outputs": [{"path": "/data/out/x", "url": "/abs/x"}]}, "outputs[0].url: '/abs/x' is not a plain"),
        ({"outputs": [{"path": "/data/out/x", "url": "a\\b"}]}, "outputs[0].url"),
        # binding over a directory the image needs would fail every attempt: refused up front
        ({"volumes": ["/bin"]}, "'/bin' is under /bin, which the image or the engine needs"),
        ({"volumes": ["/usr/local/bin"]}, "is under /usr"),
        ({"volumes": ["/lib64"]}, "is under /lib64"),
        ({"inputs": [{"path": "/etc/app/conf.ini", "content": "x"}]}, "is under /etc"),
        ({"executors": [{"image": IMAGE, "command": ["true"], "workdir": "/sbin"}]}, "is under /sbin"),
        ({"tags": {f"t{i}": "" for i in range(65)}}, "tags: 65 tags"),
    ],
)
def test_a_wrong_task_is_a_400_that_says_what_is_wrong(tes: Tes, changes: dict[str, Any], says: str) -> None:
    response = tes.post("/tasks", task(**changes))
    assert response.status_code == 400, response.content
    assert says in response.json()["detail"]
    assert not Calculation.objects.exists()


@pytest.mark.parametrize(
    ("changes", "where", "says"),
    [
        # what the GA4GH compliance suite sends: a bucket of no S3 storage this deployment has
        ({"inputs": [{"path": "/data/m", "url": "s3://my-object-store/file-1"}]}, "inputs[0].url",
         "keeps files on its filesystem and reads no s3:// objects"),
        ({"inputs": [{"path": "/data/m", "url": "ftp://example.org/m"}]}, "inputs[0].url",
         "does not fetch ftp:// URLs"),
        ({"inputs": [{"path": "/data/m", "url": "https://example.org/m"}]}, "inputs[0].url",
         "does not fetch https:// URLs"),
        ({"outputs": [{"path": "/data/out/x", "url": "s3://my-object-store/outfile-1"}]}, "outputs[0].url",
         "writes to no s3:// location"),
    ],
)  # fmt: skip
def test_a_url_this_deployment_cannot_reach_is_accepted_and_the_task_will_say_why(
    tes: Tes, changes: dict[str, Any], where: str, says: str
) -> None:
    """As other TES servers do: the task is accepted, and ends SYSTEM_ERROR with this reason in its
    system logs before any executor runs (workflows/tests/execution/test_tes_runner.py)."""
    created = tes.post("/tasks", task(**changes))
    assert created.status_code == 200, created.content
    (unreachable,) = TesTask.objects.get(calculation_id=created.json()["id"]).spec["unreachable"]
    assert unreachable["where"] == where and says in unreachable["reason"]


def test_with_s3_storage_a_bucket_tasks_may_not_read_is_accepted_and_the_task_will_say_why(
    tes: Tes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().storage, "backend", "s3")
    monkeypatch.setattr(get_settings().tes, "s3_input_buckets", ["shared-refs"])
    created = tes.post("/tasks", task(inputs=[{"path": "/data/m", "url": "s3://my-object-store/file-1"}]))
    assert created.status_code == 200, created.content
    (unreachable,) = TesTask.objects.get(calculation_id=created.json()["id"]).spec["unreachable"]
    assert "bucket 'my-object-store' is not one tasks may read here" in unreachable["reason"]
    assert "shared-refs" in unreachable["reason"]


def test_inline_content_is_bounded(tes: Tes) -> None:
    limit = get_settings().tes.max_content_bytes
    response = tes.post("/tasks", task(inputs=[{"path": "/data/in/m.smi", "content": "C" * (limit + 1)}]))
    assert response.status_code == 400 and "POST /api/v2/files" in response.json()["detail"]


def test_another_users_file_is_not_found(tes: Tes, bob: Any) -> None:
    bobs = bob.upload("m.smi", b"CCO\n").json()["id"]
    response = tes.post("/tasks", task(inputs=[{"path": "/data/in/m.smi", "url": f"emgapi://files/{bobs}"}]))
    assert response.status_code == 404 and "not found" in response.json()["detail"]


def test_images_outside_the_allowed_list_need_a_permission(tes: Tes, alice_id: int) -> None:
    body = task(executors=[{"image": "alpine:3", "command": ["true"]}])
    refused = tes.post("/tasks", body)
    assert refused.status_code == 403
    assert "alpine:3" in refused.json()["detail"] and "Can run any container image" in refused.json()["detail"]
    user = get_user_model().objects.get(id=alice_id)
    user.user_permissions.add(Permission.objects.get(codename="run_any_image"))
    assert tes.post("/tasks", body).status_code == 200


@pytest.mark.parametrize(
    "image",
    [
        "alpine:x/../../containers",  # a wildcard `alpine:*` matched it, and the engine's API path became /containers
        "alpine:x/../../../v1.41/containers/json",
        "../containers",
        "Alpine",
        "-alpine",
        "alpine:",
        "alpine:x y",
        "alpine@sha256:abc",
        "alpine:" + "x" * 129,
    ],
)
def test_an_image_that_is_not_a_reference_is_a_400_before_any_allowlist(
    tes: Tes, alice_id: int, monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    monkeypatch.setattr(get_settings().tes, "allowed_images", ["alpine:*", "*"])
    get_user_model().objects.get(id=alice_id).user_permissions.add(Permission.objects.get(codename="run_any_image"))
    response = tes.post("/tasks", task(executors=[{"image": image, "command": ["true"]}]))
    assert response.status_code == 400, response.content
    assert "executors[0].image" in response.json()["detail"]
    assert "is not a container image reference" in response.json()["detail"]
    assert not Calculation.objects.exists()


@pytest.mark.parametrize(
    "image",
    ["alpine", "alpine:3.19", "localhost:5000/tools/obabel:3.1.1", "quay.io/biocontainers/samtools:1.9--h91753b0_8",
     "ghcr.io/org/tool:1@sha256:" + "0" * 64],
)  # fmt: skip
def test_image_references_by_dockers_grammar_are_accepted(
    tes: Tes, monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    monkeypatch.setattr(get_settings().tes, "allowed_images", ["*"])
    assert tes.post("/tasks", task(executors=[{"image": image, "command": ["true"]}])).status_code == 200


def test_safe_names_and_directories_are_accepted(tes: Tes) -> None:
    body = task(
        outputs=[{"path": "/data/out/m.sdf", "name": "ethanol structure", "url": "ethanol_1.sdf"}],
        volumes=["/opt/scratch", "/var/cache/x", "/home/u"],
        executors=[{"image": IMAGE, "command": ["true"], "env": {"_A1": "x; y", "PATH": "/usr/bin"}}],
    )
    assert tes.post("/tasks", body).status_code == 200


def test_allowed_images_are_a_setting(tes: Tes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().tes, "allowed_images", ["alpine:*"])
    assert tes.post("/tasks", task(executors=[{"image": "alpine:3", "command": ["true"]}])).status_code == 200
    assert tes.post("/tasks", task()).status_code == 403  # the tools' images are no longer the default


def test_without_containers_a_task_is_refused_with_how_to_enable_them(
    tes: Tes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().execution, "enabled", ["local"])
    response = tes.post("/tasks", task())
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "task engines-up" in detail and "task images" in detail and "EMGAPI_EXECUTION__ENABLED" in detail
    assert not Calculation.objects.exists()  # never left QUEUED


def test_list_filters_pages_and_views(tes: Tes) -> None:
    ids = []
    for i in range(5):
        tags = {"project": "p1" if i % 2 else "p2", **({"urgent": ""} if i == 4 else {})}
        ids.append(tes.post("/tasks", task(name=f"job-{i}", tags=tags)).json()["id"])
    tes.post(f"/tasks/{ids[0]}:cancel")
    listed = tes.get("/tasks").json()
    assert [t["id"] for t in listed["tasks"]] == ids[::-1]  # newest first
    assert set(listed["tasks"][0]) == {"id", "state"}  # MINIMAL by default
    assert isinstance(unmarshal(listed, ListTasksResponse), ListTasksResponse)
    assert [t["id"] for t in tes.get("/tasks", name_prefix="job-3").json()["tasks"]] == [ids[3]]
    assert [t["id"] for t in tes.get("/tasks", state="CANCELED").json()["tasks"]] == [ids[0]]
    p1 = tes.get("/tasks", tag_key="project", tag_value="p1").json()["tasks"]
    assert {t["id"] for t in p1} == {ids[1], ids[3]}
    assert [t["id"] for t in tes.get("/tasks", tag_key="urgent").json()["tasks"]] == [ids[4]]
    both = tes.client.get("/ga4gh/tes/v1/tasks?tag_key=project&tag_value=p2&tag_key=urgent").json()["tasks"]
    assert [t["id"] for t in both] == [ids[4]]
    seen, token = [], None
    while True:
        page = tes.get("/tasks", page_size=2, **({"page_token": token} if token else {})).json()
        seen += [t["id"] for t in page["tasks"]]
        if not (token := page.get("next_page_token")):
            break
    assert seen == ids[::-1]
    full = tes.get("/tasks", view="FULL").json()["tasks"][0]
    assert full["executors"] and full["inputs"][0]["content"] == "CCO\n"
    assert tes.get("/tasks", page_token="garbage").status_code == 400


def test_cancel_a_queued_task_and_twice(tes: Tes) -> None:
    task_id = tes.post("/tasks", task()).json()["id"]
    assert tes.post(f"/tasks/{task_id}:cancel").json() == {}
    assert tes.get(f"/tasks/{task_id}").json()["state"] == "CANCELED"
    assert tes.post(f"/tasks/{task_id}:cancel").status_code == 200


def test_a_cancel_that_loses_the_race_to_another_cancel_is_still_a_200(
    tes: Tes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cancels at once: the second reads QUEUED, then finds the task CANCELED by the first."""
    from calculations.actions import do_request_cancel
    from calculations.api import tes as tes_api

    def after_a_concurrent_cancel(calculation_id: Any, *, actor: str) -> Any:
        do_request_cancel(calculation_id, actor="the other request")
        return do_request_cancel(calculation_id, actor=actor)

    task_id = tes.post("/tasks", task()).json()["id"]
    monkeypatch.setattr(tes_api, "do_request_cancel", after_a_concurrent_cancel)
    response = tes.post(f"/tasks/{task_id}:cancel")
    assert response.status_code == 200, response.content
    assert tes.get(f"/tasks/{task_id}").json()["state"] == "CANCELED"


def test_cancel_of_an_ended_task_is_a_409_with_its_state(tes: Tes) -> None:
    task_id = tes.post("/tasks", task()).json()["id"]
    Calculation.objects.filter(id=task_id).update(state="COMPLETE")
    response = tes.post(f"/tasks/{task_id}:cancel")
    assert response.status_code == 409 and "has already ended (COMPLETE)" in response.json()["detail"]


def test_another_users_task_is_not_found(tes: Tes, bob: Any, db: None) -> None:
    from calculations.actions import do_create_api_token

    task_id = tes.post("/tasks", task()).json()["id"]
    other = Tes(do_create_api_token("carol"))
    for response in (
        other.get(f"/tasks/{task_id}"),
        other.post(f"/tasks/{task_id}:cancel"),
        other.get("/tasks/not-a-task-id"),
    ):
        assert response.status_code == 404
    assert other.get("/tasks").json()["tasks"] == []
    assert tes.get(f"/tasks/{task_id}").json()["state"] == "QUEUED"


def test_service_info_is_what_ga4gh_clients_read(tes: Tes) -> None:
    info = tes.get("/service-info").json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert "emgapi://files/" in info["storage"]
    assert isinstance(unmarshal(info, ServiceInfo), ServiceInfo)


def test_nothing_without_credentials() -> None:
    anonymous = Tes(None)
    assert anonymous.get("/service-info").status_code == 401
    assert anonymous.get("/tasks").status_code == 401
    assert anonymous.post("/tasks", task()).status_code == 401


def test_values_nothing_can_store_are_refused_not_a_server_error(tes: Tes) -> None:
    for raw in ('"resources": {"disk_gb": 1e400}', '"description": "\\ud800"'):
        body = json.dumps(task())[:-1] + ", " + raw + "}"
        response = tes.client.post("/ga4gh/tes/v1/tasks", body, content_type="application/json")
        assert response.status_code == 400, (raw, response.content)
    assert not Calculation.objects.exists()


def test_every_tes_state_is_a_filter(tes: Tes) -> None:
    tes.post("/tasks", task())
    assert tes.get("/tasks", state="PREEMPTED").json() == {"tasks": []}
    assert len(tes.get("/tasks", state="QUEUED").json()["tasks"]) == 1


def test_a_task_is_bound_by_what_any_calculation_may_ask_for_here(tes: Tes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().resources, "max_memory_mb", 2048)
    refused = tes.post("/tasks", task(resources={"ram_gb": 3}))
    assert refused.status_code == 400, refused.content
    assert refused.json()["detail"] == (
        "resources.ram_gb: 3072 MB is above this deployment's maximum of 2048 MB (EMGAPI_RESOURCES__MAX_MEMORY_MB)"
    )
    assert tes.post("/tasks", task(resources={"ram_gb": 2})).status_code == 200
