"""Per-user limits answer with clear 429/413 errors; work that costs nothing is never refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]


def test_too_many_calculations_in_flight_is_a_429(
    alice: ApiClient, bob: ApiClient, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().quota, "max_active_calculations", 2)
    molecules = uploaded("m.smi", b"CCO\n")

    def submit(client: ApiClient, use_cache: bool = False) -> Any:
        return client.post("/tools/obabel/calculations", {"inputs": {"molecules": molecules}, "params": {},
                                                          "use_cache": use_cache})  # fmt: skip

    assert submit(alice).status_code == submit(alice).status_code == 202
    refused = submit(alice)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "you have 2 calculations queued or running; the limit is 2" in refused.json()["detail"]
    # following an identical calculation in flight runs nothing: not counted, not refused
    assert submit(alice, use_cache=True).status_code == 202
    # the limit is per user
    bobs = bob.upload("m.smi", b"CCO\n").json()["id"]
    assert bob.post("/tools/obabel/calculations", {"inputs": {"molecules": bobs}, "params": {}}).status_code == 202


def test_a_full_storage_quota_is_a_413(alice: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().quota, "storage_bytes", 10)
    assert alice.upload("a.txt", b"12345678").status_code == 201
    refused = alice.upload("b.txt", b"12345")
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert "you hold 8 bytes (identical contents count once), this file is 5 more, and the quota is 10" in detail
    assert "DELETE /api/v2/files/{id}" in detail  # how to free space
    assert alice.get("/files").json()["count"] == 1


def test_an_upload_over_the_size_limit_is_a_413(alice: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 4)
    refused = alice.upload("big.txt", b"12345")
    assert refused.status_code == 413 and "the limit is 4" in refused.json()["detail"]


def test_a_user_may_have_limits_of_their_own(
    alice: ApiClient, bob: ApiClient, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calculations.actions import do_set_user_quota

    monkeypatch.setattr(get_settings().quota, "max_active_calculations", 1)
    do_set_user_quota("alice", max_active_calculations=3, storage_bytes=10_000)
    molecules = uploaded("m.smi", b"CCO\n")
    answers = [
        alice.post("/tools/obabel/calculations", {"inputs": {"molecules": molecules}, "use_cache": False})
        for _ in range(4)
    ]
    assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
    assert "the limit is 3" in answers[3].json()["detail"]
    assert "the quota is 10000" in alice.upload("big.txt", b"x" * 10_001).json()["detail"]
    bobs = bob.upload("m.smi", b"CCO\n").json()["id"]  # everyone else keeps the deployment's limits
    body = {"inputs": {"molecules": bobs}, "use_cache": False}
    assert [bob.post("/tools/obabel/calculations", body).status_code for _ in range(2)] == [202, 429]


def test_a_tes_tasks_scratch_space_counts_against_the_storage_quota_while_it_is_in_flight(
    alice: ApiClient, alice_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from django.test import Client

    gib = 1024**3
    monkeypatch.setattr(get_settings().quota, "storage_bytes", gib + gib // 2 + 8)
    tes = Client(headers={"Authorization": f"Bearer {alice_token}"})

    def submit(disk_gb: float) -> Any:
        body = {"executors": [{"image": "emgapi/obabel:3.1.1", "command": ["true"]}], "resources": {"disk_gb": disk_gb}}
        return tes.post("/ga4gh/tes/v1/tasks", json.dumps(body), content_type="application/json")

    first = submit(1)
    assert first.status_code == 200 and submit(0.5).status_code == 200
    refused = alice.upload("b.txt", b"123456789")
    assert refused.status_code == 413
    assert "your GA4GH TES tasks in flight reserve 1610612736 bytes of scratch space" in refused.json()["detail"]
    assert alice.upload("a.txt", b"12345678").status_code == 201  # what is left
    too_much = submit(0.5)
    assert too_much.status_code == 413
    assert "this task's scratch space (resources.disk_gb) is 536870912 more" in too_much.json()["detail"]
    tes.post(f"/ga4gh/tes/v1/tasks/{first.json()['id']}:cancel")  # an ended task reserves nothing
    assert submit(0.5).status_code == 200
