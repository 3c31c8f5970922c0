"""Files can be deleted; the quota counts the distinct bytes a user holds; a blob no one holds is
erased after a grace period, never from under a new upload of the same bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model

from calculations.actions import (
    JobOutcome,
    OutputBlob,
    do_collect_orphan_blobs,
    do_end_attempt,
    do_mark_running,
    do_start_calculation,
    held_bytes,
)
from calculations.actions.files import count_held_bytes
from calculations.models import File, OrphanBlob
from calculations.policies import AttemptEnd
from calculations.storage import get_storage
from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]
NOW = timedelta(0)


def _submit(client: ApiClient, file_id: str, **extra: Any) -> Any:
    return client.post("/tools/obabel/calculations", {"inputs": {"molecules": file_id}, "params": {}, **extra})


def _run_to_completion(calculation: str, output: bytes) -> None:
    """What the worker would do, through the same actions (no tool needed)."""
    blob, calculation_id = get_storage().put(io.BytesIO(output)), UUID(calculation)
    do_start_calculation(calculation_id, 1, flow_run_id=None, backend="local", host="h", workdir="/w")
    do_mark_running(calculation_id, 1, job_id="1", argv=["obabel"], executable=None)
    outputs = [OutputBlob("molecules", "out.sdf", blob.sha256, blob.size)]
    do_end_attempt(calculation_id, 1, AttemptEnd.SUCCEEDED, outputs=outputs, outcome=JobOutcome(0, {}, None, None))


def test_a_deleted_file_is_gone_for_its_owner_and_frees_its_bytes(alice: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    assert alice.client.delete(f"/api/v2/files/{file_id}").status_code == 204
    assert alice.get(f"/files/{file_id}").status_code == 404
    assert alice.get("/files").json()["count"] == 0
    assert alice.client.delete(f"/api/v2/files/{file_id}").status_code == 404


def test_a_file_read_by_a_calculation_in_flight_cannot_be_deleted(alice: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    calc = _submit(alice, file_id).json()
    refused = alice.client.delete(f"/api/v2/files/{file_id}")
    assert refused.status_code == 409 and calc["id"] in refused.json()["detail"]
    assert "cancel them or wait" in refused.json()["detail"]
    assert alice.post(f"/calculations/{calc['id']}/cancel").status_code == 202
    assert alice.client.delete(f"/api/v2/files/{file_id}").status_code == 204
    ended = alice.get(f"/calculations/{calc['id']}").json()
    assert ended["inputs"] == {"molecules": None}  # the link is gone; provenance keeps the sha256
    assert ended["provenance"]["inputs"]["molecules"]


def test_the_quota_counts_distinct_bytes_so_copies_and_cache_hits_cost_nothing(
    alice: ApiClient, alice_id: int, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    molecules = uploaded("m.smi", b"CCO\n")
    first = _submit(alice, molecules).json()
    _run_to_completion(first["id"], b"x" * 1000)
    before = held_bytes(alice_id)
    monkeypatch.setattr(get_settings().quota, "storage_bytes", before)  # full to the last byte
    for _ in range(20):  # 20 cache hits, each with its own output rows: nothing more held
        assert _submit(alice, molecules).status_code == 200
    assert held_bytes(alice_id) == before
    assert alice.upload("again.smi", b"CCO\n").status_code == 201  # bytes she already holds: free
    refused = alice.upload("new.smi", b"CCCO\n")
    assert refused.status_code == 413 and f"you hold {before} bytes" in refused.json()["detail"]


def test_outputs_that_would_exceed_the_quota_fail_the_calculation_and_say_so(
    alice: ApiClient, alice_id: int, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    calc = _submit(alice, uploaded("m.smi", b"CCO\n")).json()
    monkeypatch.setattr(get_settings().quota, "storage_bytes", held_bytes(alice_id) + 100)
    _run_to_completion(calc["id"], b"y" * 101)
    ended = alice.get(f"/calculations/{calc['id']}").json()
    assert (ended["state"], ended["outputs"]) == ("EXECUTOR_ERROR", {})
    assert "storage quota exceeded" in ended["error"] and "obabel's output is 101 more" in ended["error"]
    assert OrphanBlob.objects.exists()  # its stored output is collected, not leaked


def test_the_running_total_of_held_bytes_matches_a_count_of_the_files_through_every_change(
    alice: ApiClient, alice_id: int, bob: ApiClient, uploaded: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quota reads one row, not all of a user's files: kept as uploads, copies, outputs, cache
    hits and deletions come and go, and counted afresh before anyone is refused by it."""
    first, copy = uploaded("m.smi", b"CCO\n"), uploaded("copy.smi", b"CCO\n")
    calc = _submit(alice, first).json()
    _run_to_completion(calc["id"], b"x" * 1000)
    assert _submit(alice, copy).status_code == 200  # a cache hit: output rows of its own, same bytes
    bob.upload("b.smi", b"CCO\n")  # someone else's copy is theirs
    assert held_bytes(alice_id) == count_held_bytes(alice_id) == 4 + 1000
    assert alice.client.delete(f"/api/v2/files/{first}").status_code == 204
    assert held_bytes(alice_id) == 4 + 1000  # she still holds those bytes, as copy.smi
    assert alice.client.delete(f"/api/v2/files/{copy}").status_code == 204
    assert held_bytes(alice_id) == count_held_bytes(alice_id) == 1000
    # rows gone other than through the actions leave the total high: it is counted afresh, not refused
    File.objects.filter(owner_id=alice_id).delete()
    monkeypatch.setattr(get_settings().quota, "storage_bytes", 500)
    assert alice.upload("fits.smi", b"C" * 400).status_code == 201
    assert held_bytes(alice_id) == count_held_bytes(alice_id) == 400


@pytest.fixture
def sweep_now() -> Iterator[Callable[[], int]]:
    yield lambda: do_collect_orphan_blobs(NOW)


def test_a_blob_no_one_holds_is_erased_after_the_grace_period(
    alice: ApiClient, bob: ApiClient, uploaded: Upload, sweep_now: Callable[[], int]
) -> None:
    storage = get_storage()
    shared = b">shared\nACGT\n"
    alices, bobs = uploaded("a.fna", shared), bob.upload("b.fna", shared).json()["id"]
    sha256 = alice.get(f"/files/{alices}").json()["sha256"]
    alice.client.delete(f"/api/v2/files/{alices}")
    assert sweep_now() == 0 and storage.exists(sha256)  # bob still holds it
    bob.client.delete(f"/api/v2/files/{bobs}")
    assert do_collect_orphan_blobs(timedelta(hours=1)) == 0 and storage.exists(sha256)  # within the grace period
    assert sweep_now() == 1 and not storage.exists(sha256)


def test_an_upload_racing_the_sweep_of_the_same_bytes_keeps_its_blob(
    alice: ApiClient, uploaded: Upload, monkeypatch: pytest.MonkeyPatch, sweep_now: Callable[[], int]
) -> None:
    content = b">raced\nACGTACGT\n"
    first = uploaded("a.fna", content)
    sha256 = alice.get(f"/files/{first}").json()["sha256"]
    alice.client.delete(f"/api/v2/files/{first}")  # an orphan now, due for the sweep
    storage = get_storage()
    put = storage.put

    def put_then_sweep(stream: Any) -> Any:
        info = put(stream)
        sweep_now()  # the sweep runs between the upload's store and its row: it erases the blob
        return info

    monkeypatch.setattr(storage, "put", put_then_sweep)
    again = uploaded("b.fna", content)
    monkeypatch.undo()
    assert storage.exists(sha256)  # stored again by the upload that found it gone
    assert b"".join(alice.client.get(f"/api/v2/files/{again}/content").streaming_content) == content  # type: ignore[attr-defined]
    assert sweep_now() == 0 and storage.exists(sha256)  # held again: no longer an orphan


def test_deleting_users_files_does_not_touch_others(alice: ApiClient, bob: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("m.smi", b"CCO\n")
    assert bob.client.delete(f"/api/v2/files/{file_id}").status_code == 404
    assert alice.get(f"/files/{file_id}").status_code == 200
    assert get_user_model().objects.count() == 2


def test_a_calculation_whose_outputs_its_owner_deleted_is_no_cache_hit(
    alice: ApiClient, bob: ApiClient, uploaded: Upload
) -> None:
    first = _submit(alice, uploaded("m.smi", b"CCO\n")).json()
    _run_to_completion(first["id"], b"z" * 10)
    output = alice.get(f"/calculations/{first['id']}").json()["outputs"]["molecules"][0]
    assert alice.client.delete(f"/api/v2/files/{output}").status_code == 204
    again = _submit(bob, bob.upload("mine.smi", b"CCO\n").json()["id"])
    assert again.status_code == 202 and again.json()["cache_hit"] is False  # runs again: never COMPLETE with nothing
