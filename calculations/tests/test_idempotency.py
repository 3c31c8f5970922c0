"""Idempotency-Key: a retried POST is answered, not executed again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from calculations.models import Calculation, File
from conftest import ApiClient

Upload = Callable[[str, bytes], str]


def _post(client: ApiClient, path: str, body: Any, key: str | None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.client.post(f"/api/v2{path}", body, content_type="application/json", headers=headers)


def test_a_retried_submission_returns_the_first_answer_and_runs_once(alice: ApiClient, uploaded: Upload) -> None:
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {}, "use_cache": False}
    first = _post(alice, "/tools/obabel/calculations", body, "retry-me-1")
    again = _post(alice, "/tools/obabel/calculations", body, "retry-me-1")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert Calculation.objects.count() == 1
    # without a key, the same body is a new request
    assert _post(alice, "/tools/obabel/calculations", body, None).json()["id"] != first.json()["id"]


def test_a_key_reused_for_another_request_is_refused(alice: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    _post(alice, "/tools/obabel/calculations", {"inputs": {"molecules": file_id}, "params": {}}, "k")
    changed = {"inputs": {"molecules": file_id}, "params": {"gen3d": True}}
    other = _post(alice, "/tools/obabel/calculations", changed, "k")
    assert other.status_code == 422 and "used for a different request" in other.json()["detail"]


def test_keys_belong_to_their_user(alice: ApiClient, bob: ApiClient, uploaded: Upload) -> None:
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {}}
    assert _post(alice, "/tools/obabel/calculations", body, "shared-key").status_code == 202
    # bob's request with the same key is his own (and alice's file is not his: a plain 422)
    answer = _post(bob, "/tools/obabel/calculations", body, "shared-key")
    assert answer.status_code == 422 and "not found" in answer.json()["detail"]


def test_a_refused_request_is_replayed_too(alice: ApiClient) -> None:
    body = {"inputs": {"molecules": "not-a-uuid"}, "params": {}}
    first = _post(alice, "/tools/obabel/calculations", body, "bad-1")
    again = _post(alice, "/tools/obabel/calculations", body, "bad-1")
    assert first.status_code == again.status_code == 422 and again.json() == first.json()


def test_a_retried_upload_is_one_file(alice: ApiClient) -> None:
    def upload() -> Any:
        return alice.client.post(
            "/api/v2/files", {"file": SimpleUploadedFile("g.fna", b">c\nACGT\n")}, headers={"Idempotency-Key": "up-1"}
        )

    first, again = upload(), upload()
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert File.objects.count() == 1


def test_a_reused_key_with_another_file_of_the_same_size_is_refused(alice: ApiClient) -> None:
    def upload(content: bytes) -> Any:
        return alice.client.post(
            "/api/v2/files", {"file": SimpleUploadedFile("g.fna", content)}, headers={"Idempotency-Key": "up-2"}
        )

    first = upload(b">c\nACGT\n")
    other = upload(b">c\nTTTT\n")  # same length, other bytes: it must not get the first file's answer
    assert first.status_code == 201
    assert other.status_code == 422 and "different request" in other.json()["detail"]


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\nkey"])
def test_a_malformed_key_is_a_400(alice: ApiClient, key: str) -> None:
    answer = _post(alice, "/tools/obabel/calculations", {}, key)
    assert answer.status_code == 400 and "Idempotency-Key must be" in answer.json()["detail"]


def test_records_expire_after_a_day_and_their_keys_can_be_used_again(alice: ApiClient, uploaded: Upload) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from calculations.idempotency import expire_records
    from calculations.models import IdempotentRequest

    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {}, "use_cache": False}
    first = _post(alice, "/tools/obabel/calculations", body, "daily")
    assert expire_records() == 0  # fresh: kept
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert expire_records() == 1
    again = _post(alice, "/tools/obabel/calculations", body, "daily")
    assert again.status_code == 202 and again.json()["id"] != first.json()["id"]
