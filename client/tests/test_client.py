"""The Python client against the real API (a live server on the test database): large files go
straight to a real S3 server (rclone) through presigned URLs when the platform stores files there,
and in one multipart POST when it does not; a download that does not hash to the file's sha256 is
refused and leaves nothing; the API's refusals are `ApiError`s carrying its detail."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from emgapi_client import ApiError, ChecksumMismatch, Client

from calculations.actions import do_create_api_token
from calculations.models import Upload
from calculations.storage import get_storage
from calculations.storage.filesystem import FilesystemBlobStorage
from calculations.storage.s3 import S3BlobStorage
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db(transaction=True)
MiB = 1024 * 1024


@pytest.mark.s3
def test_a_large_file_goes_to_s3_in_presigned_parts_and_comes_back_the_same(
    live_server: Any, s3_storage: S3BlobStorage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(get_settings().uploads, "part_bytes", 5 * MiB)  # S3's smallest: 3 parts here
    data = os.urandom(11 * MiB + 3)
    (tmp_path / "reads.fq").write_bytes(data)
    seen: list[tuple[int, int]] = []
    with Client(live_server.url, do_create_api_token("presigned"), presigned_threshold_bytes=MiB) as api:
        file = api.upload(tmp_path / "reads.fq", progress=lambda done, total: seen.append((done, total)))
        back = api.download(file["id"], tmp_path / "back")
    assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["size"] == len(data)
    upload = Upload.objects.get(file_id=file["id"])  # it went through POST /uploads, not POST /files
    assert upload.state == "COMPLETE" and upload.part_size == 5 * MiB
    assert seen[-1] == (len(data), len(data)) and len(seen) > 3
    assert back.read_bytes() == data


def test_on_filesystem_storage_a_large_file_is_one_multipart_post(live_server: Any, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 5)
    (tmp_path / "reads.fq").write_bytes(data)
    with Client(live_server.url, do_create_api_token("plain"), presigned_threshold_bytes=MiB) as api:
        file = api.upload(tmp_path / "reads.fq")  # POST /uploads answers 409 here: the client falls back
        assert api.download(file["id"], tmp_path / "back").read_bytes() == data
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    assert not Upload.objects.exists()


def test_a_download_that_does_not_match_its_sha256_is_refused_and_leaves_nothing(
    live_server: Any, tmp_path: Path
) -> None:
    (tmp_path / "genome.fna").write_bytes(b">c\n" + b"ACGT" * 10_000 + b"\n")
    with Client(live_server.url, do_create_api_token("rot")) as api:
        file = api.upload(tmp_path / "genome.fna")
        storage = get_storage()
        assert isinstance(storage, FilesystemBlobStorage)
        blob = storage._path(file["sha256"])
        blob.chmod(0o600)
        blob.write_bytes(blob.read_bytes().replace(b"ACGT", b"ACGA", 1))  # bit rot on the server's disk
        with pytest.raises(ChecksumMismatch, match=file["sha256"]):
            api.download(file["id"], tmp_path / "back")
    assert list((tmp_path / "back").iterdir()) == []


def test_the_apis_refusals_are_api_errors_with_its_detail(live_server: Any) -> None:
    token = do_create_api_token("refused")
    missing = str(uuid4())
    raw = httpx.post(
        f"{live_server.url}/api/v2/tools/prodigal/calculations",
        json={"inputs": {"contigs": missing}},
        headers={"Authorization": f"Bearer {token}"},
    )
    with Client(live_server.url, token) as api, pytest.raises(ApiError) as refused:
        api.submit("prodigal", {"contigs": missing})
    assert refused.value.status_code == raw.status_code and raw.status_code in (404, 422)
    assert str(refused.value) == raw.json()["detail"] and missing in str(refused.value)
    with Client(live_server.url, "wrong-token") as api, pytest.raises(ApiError) as unauthenticated:
        api.check_token()
    assert unauthenticated.value.status_code == 401 and "authentication required" in str(unauthenticated.value)


def test_a_submission_carries_its_resources_and_its_retry_with_more(live_server: Any, tmp_path: Path) -> None:
    token = do_create_api_token("sizer")
    (tmp_path / "m.smi").write_text("CCO\n")
    with Client(live_server.url, token) as api:
        molecules = api.upload(tmp_path / "m.smi")["id"]
        calc = api.submit(
            "obabel", {"molecules": molecules}, resources={"memory_mb": 256}, retry={"on_time_limit": False,
            "max_memory_mb": 1024}, use_cache=False,
        )  # fmt: skip
        provenance = api.get_calculation(calc["id"])["provenance"]
    assert provenance["resources"]["memory_mb"] == 256
    assert provenance["escalation"] == {"memory_mb": {"factor": 2, "cap": 1024}}


def test_a_wait_polls_only_the_runs_progress_and_reads_it_whole_once_it_has_ended(
    live_server: Any, workflow_catalogue: Any
) -> None:
    """A client following a run of thousands of steps asks for their counts at each poll, not for
    every step with its outputs (0.6 MB and ~90 ms of the server's CPU at 1,000 steps)."""
    import threading
    import time

    from django.contrib.auth import get_user_model

    from calculations import actions
    from calculations.policies import AttemptEnd

    token = do_create_api_token("follower")
    owner_id = get_user_model().objects.get(username="follower").id
    run = actions.do_create_workflow_run(owner_id, "pipeline", {"steps": {}})
    actions.do_start_workflow_run(run.id, 1, flow_run_id=uuid4(), worker="w1")
    ender = threading.Timer(0.8, actions.do_end_workflow_run, (run.id, 1, AttemptEnd.SUCCEEDED))
    asked: list[str] = []
    with Client(live_server.url, token, poll_seconds=0.2) as api:
        api._http.event_hooks["request"].append(lambda request: asked.append(request.url.path))
        started = time.monotonic()
        ender.start()
        ended = api.wait_workflow_run(str(run.id), timeout_seconds=30)
    ender.join()
    assert ended["state"] == "COMPLETE" and ended["steps"] == [] and time.monotonic() - started >= 0.8
    progress, whole = f"/api/v2/workflow-runs/{run.id}/progress", f"/api/v2/workflow-runs/{run.id}"
    assert asked.count(progress) >= 2 and asked[-1] == whole and asked.count(whole) == 1, asked
