"""Presigned uploads and downloads against a real S3 server (rclone serve s3): the parts go from the
client (curl, httpx) straight to S3; completing verifies the bytes before a file exists."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from calculations.actions.uploads import MAX_PARTS, part_sizes
from calculations.models import File, Upload
from calculations.storage.s3 import S3BlobStorage
from conftest import ApiClient
from emgapiv2.config import get_settings

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


@pytest.fixture
def small_parts(s3_storage: S3BlobStorage, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3BlobStorage]:
    """S3 storage with 5 MiB parts (S3's smallest), so a test needs only a few MiB for several parts."""
    monkeypatch.setattr(get_settings().uploads, "part_bytes", 5 * MiB)
    yield s3_storage


def _data(size: int) -> bytes:
    return os.urandom(size)


def _start(client: ApiClient, name: str, size: int, **extra: Any) -> Any:
    return client.post("/uploads", {"name": name, "size": size, **extra})


def _complete(client: ApiClient, upload_id: str, body: Any = None) -> Any:
    return client.post(f"/uploads/{upload_id}/complete", body)


def _put_with_curl(parts: list[dict[str, Any]], data: bytes, tmp_path: Path) -> None:
    offset = 0
    for part in parts:
        path = tmp_path / f"part-{part['part_number']}"
        path.write_bytes(data[offset : offset + part["size"]])
        offset += part["size"]
        subprocess.run(["curl", "-sS", "--fail", "-T", str(path), part["url"]], check=True, capture_output=True)


def _put_with_httpx(parts: list[dict[str, Any]], data: bytes) -> list[dict[str, Any]]:
    """PUT every part at once, as a client in a hurry would; the answers' ETags, by part."""
    starts = [sum(p["size"] for p in parts[:index]) for index in range(len(parts))]

    def put(part: dict[str, Any], start: int) -> dict[str, Any]:
        response = httpx.put(part["url"], content=data[start : start + part["size"]], timeout=60)
        assert response.status_code == 200, response.text
        return {"part_number": part["part_number"], "etag": response.headers["ETag"]}

    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(put, parts, starts))


def _content(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def _staged(storage: S3BlobStorage) -> list[str]:
    """What S3 holds under the staging prefix: objects, and multipart uploads not completed or aborted."""
    prefix = storage.staging_key("")
    objects = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix).get("Contents", [])
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=prefix).get("Uploads", [])
    return [o["Key"] for o in objects] + [f"multipart {u['Key']}" for u in uploads]


def test_parts_put_with_curl_make_a_file_that_downloads_byte_identical(
    alice: ApiClient, small_parts: S3BlobStorage, tmp_path: Path
) -> None:
    data = _data(11 * MiB + 12345)
    started = _start(alice, "reads ü.fastq", len(data), sha256=hashlib.sha256(data).hexdigest())
    assert started.status_code == 201, started.content
    upload = started.json()
    assert upload["state"] == "OPEN" and upload["part_size"] == 5 * MiB
    assert [(p["part_number"], p["size"]) for p in upload["parts"]] == [(1, 5 * MiB), (2, 5 * MiB), (3, MiB + 12345)]

    _put_with_curl(upload["parts"], data, tmp_path)
    completed = _complete(alice, upload["id"])  # no body: the server lists the parts itself
    assert completed.status_code == 201, completed.content
    file = completed.json()
    assert (file["name"], file["size"], file["sha256"]) == (
        "reads ü.fastq",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert _content(alice.client.get(f"/api/v2/files/{file['id']}/content")) == data
    # the blob is content-addressed, and nothing is left in staging
    assert small_parts.exists(file["sha256"]) and _staged(small_parts) == []
    assert alice.get(f"/uploads/{upload['id']}").json()["file"] == file["id"]

    # redirect=true: a 302 to S3 itself, which serves the same bytes under the file's name
    redirected = alice.client.get(f"/api/v2/files/{file['id']}/content", {"redirect": "true"})
    assert redirected.status_code == 302
    downloaded = httpx.get(redirected["Location"], timeout=60)
    assert downloaded.status_code == 200 and downloaded.content == data
    assert "filename*=UTF-8''reads%20%C3%BC.fastq" in downloaded.headers["Content-Disposition"]
    assert subprocess.run(["curl", "-sS", "--fail", "-L", redirected["Location"]], capture_output=True).stdout == data


def test_parts_put_in_parallel_complete_with_their_etags_and_a_second_complete_answers_the_same_file(
    alice: ApiClient, small_parts: S3BlobStorage
) -> None:
    data = _data(10 * MiB + 1)
    upload = _start(alice, "genome.fna", len(data)).json()  # no sha256 declared: the server computes it
    etags = _put_with_httpx(upload["parts"], data)
    completed = _complete(alice, upload["id"], {"parts": etags})
    assert completed.status_code == 201, completed.content
    assert completed.json()["sha256"] == hashlib.sha256(data).hexdigest()
    again = _complete(alice, upload["id"])
    assert again.status_code == 200 and again.json()["id"] == completed.json()["id"]
    assert File.objects.filter(owner__username="alice").count() == 1
    # aborting a complete upload would lose nothing, but it is a mistake: say what to do instead
    refused = alice.client.delete(f"/api/v2/uploads/{upload['id']}")
    assert refused.status_code == 409 and f"DELETE /api/v2/files/{completed.json()['id']}" in refused.json()["detail"]
    assert alice.client.delete(f"/api/v2/files/{completed.json()['id']}").status_code == 204
    gone = _complete(alice, upload["id"])
    assert gone.status_code == 409 and "its file has been deleted since" in gone.json()["detail"]


def test_identical_bytes_are_stored_once(alice: ApiClient, small_parts: S3BlobStorage) -> None:
    data = _data(6 * MiB)
    files = []
    for name in ("first", "second"):
        upload = _start(alice, name, len(data)).json()
        _put_with_httpx(upload["parts"], data)
        files.append(_complete(alice, upload["id"]).json())
    assert files[0]["sha256"] == files[1]["sha256"] and files[0]["id"] != files[1]["id"]
    blobs = small_parts.client.list_objects_v2(Bucket=small_parts.bucket, Prefix=small_parts.key_prefix)["Contents"]
    assert [blob["Key"] for blob in blobs] == [f"{small_parts.key_prefix}{files[0]['sha256']}"]


def test_a_sha256_mismatch_is_refused_and_leaves_no_file_and_no_bytes(
    alice: ApiClient, small_parts: S3BlobStorage
) -> None:
    data, declared = _data(6 * MiB), hashlib.sha256(b"something else").hexdigest()
    upload = _start(alice, "x.bin", len(data), sha256=declared).json()
    _put_with_httpx(upload["parts"], data)
    refused = _complete(alice, upload["id"])
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert f"sha256 mismatch: expected {declared}, got {hashlib.sha256(data).hexdigest()}" in detail
    assert not File.objects.exists() and _staged(small_parts) == []
    assert not small_parts.exists(hashlib.sha256(data).hexdigest())
    after = alice.get(f"/uploads/{upload['id']}").json()
    assert after["state"] == "FAILED" and "sha256 mismatch" in after["error"] and after["parts"] == []
    assert _complete(alice, upload["id"]).status_code == 409  # final: a new upload is needed


def test_a_size_mismatch_is_refused_and_leaves_no_file_and_no_bytes(
    alice: ApiClient, small_parts: S3BlobStorage
) -> None:
    upload = _start(alice, "x.bin", 100).json()
    (part,) = upload["parts"]
    # a part URL admits exactly the declared bytes: S3 refuses any other size
    assert httpx.put(part["url"], content=b"x" * 99, timeout=30).status_code == 403
    # so a mismatch needs S3 itself to hold other bytes (a client with the platform's keys, a faulty server)
    row = Upload.objects.get(id=upload["id"])
    small_parts.client.upload_part(
        Bucket=small_parts.bucket, Key=row.key, UploadId=row.s3_upload_id, PartNumber=1, Body=b"x" * 99
    )
    refused = _complete(alice, upload["id"])
    assert refused.status_code == 422
    assert "size mismatch: expected 100 bytes, got 99" in refused.json()["detail"]
    assert not File.objects.exists() and _staged(small_parts) == []
    assert alice.get(f"/uploads/{upload['id']}").json()["state"] == "FAILED"


def test_missing_parts_leave_the_upload_open_to_finish(alice: ApiClient, small_parts: S3BlobStorage) -> None:
    data = _data(5 * MiB + 10)
    upload = _start(alice, "x.bin", len(data)).json()
    _put_with_httpx(upload["parts"][:1], data)
    refused = _complete(alice, upload["id"])
    assert refused.status_code == 409 and "part(s) 2 of 2 have not been uploaded" in refused.json()["detail"]
    resumed = alice.get(f"/uploads/{upload['id']}").json()  # the URLs again, to finish it
    assert resumed["state"] == "OPEN" and len(resumed["parts"]) == 2
    etags = _put_with_httpx(resumed["parts"], data)
    wrong = _complete(alice, upload["id"], {"parts": etags[:1]})
    assert wrong.status_code == 422 and "name each of the parts 1 to 2" in wrong.json()["detail"]
    bad_etag = _complete(alice, upload["id"], {"parts": [etags[0], {"part_number": 2, "etag": '"0000"'}]})
    assert bad_etag.status_code == 422 and "part 2's ETag is not the one S3 holds" in bad_etag.json()["detail"]
    final = _complete(alice, upload["id"], {"parts": etags})
    assert final.status_code == 201, final.content


def test_an_aborted_upload_discards_its_parts(alice: ApiClient, small_parts: S3BlobStorage) -> None:
    upload = _start(alice, "x.bin", 10).json()
    _put_with_httpx(upload["parts"], b"0123456789")
    assert _staged(small_parts) != []
    assert alice.client.delete(f"/api/v2/uploads/{upload['id']}").status_code == 204
    assert _staged(small_parts) == []
    assert alice.get(f"/uploads/{upload['id']}").json()["state"] == "ABORTED"
    assert httpx.put(upload["parts"][0]["url"], content=b"0123456789").status_code == 404  # no such upload
    assert _complete(alice, upload["id"]).status_code == 409
    assert alice.client.delete(f"/api/v2/uploads/{upload['id']}").status_code == 204  # aborting again: no change
    assert not File.objects.exists()


def test_unfinished_uploads_are_listed_to_resume_or_abort(
    alice: ApiClient, bob: ApiClient, small_parts: S3BlobStorage
) -> None:
    kept, aborted = _start(alice, "a.bin", 10).json(), _start(alice, "b.bin", 10).json()
    alice.client.delete(f"/api/v2/uploads/{aborted['id']}")
    listed = alice.get("/uploads", state="OPEN").json()
    assert [u["id"] for u in listed["items"]] == [kept["id"]] and "parts" not in listed["items"][0]
    assert [u["id"] for u in alice.get("/uploads").json()["items"]] == [aborted["id"], kept["id"]]
    assert bob.get("/uploads").json()["count"] == 0


def test_an_empty_file_is_one_empty_part(alice: ApiClient, small_parts: S3BlobStorage) -> None:
    upload = _start(alice, "empty", 0).json()
    assert [p["size"] for p in upload["parts"]] == [0]
    _put_with_httpx(upload["parts"], b"")
    completed = _complete(alice, upload["id"])
    assert completed.status_code == 201 and completed.json()["sha256"] == hashlib.sha256(b"").hexdigest()


def test_uploads_count_against_the_limits_of_api_uploads(
    alice: ApiClient, small_parts: S3BlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1000)
    too_big = _start(alice, "big", 1001)
    assert too_big.status_code == 413 and "the limit is 1000 bytes per file" in too_big.json()["detail"]
    monkeypatch.setattr(get_settings().quota, "storage_bytes", 1000)
    assert _start(alice, "a", 600).status_code == 201
    # the unfinished upload's declared bytes count: it may become a file
    refused = _start(alice, "b", 600)
    assert refused.status_code == 413 and "your 1 unfinished one(s) (600 bytes)" in refused.json()["detail"]
    monkeypatch.setattr(get_settings().uploads, "max_open", 2)
    assert _start(alice, "c", 1).status_code == 201
    assert _start(alice, "d", 1).status_code == 429
    assert Upload.objects.filter(owner__username="alice").count() == 2


def test_part_urls_are_signed_for_the_endpoint_clients_reach(
    alice: ApiClient, small_parts: S3BlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calculations.storage import get_storage

    internal = urlsplit(get_settings().s3.endpoint_url or "")
    public = f"http://localhost:{internal.port}"  # another name for the same server, as a proxy would be
    monkeypatch.setattr(get_settings().s3, "public_endpoint_url", public)
    get_storage.cache_clear()
    data = _data(1000)
    upload = _start(alice, "x", len(data)).json()
    assert upload["parts"][0]["url"].startswith(f"{public}/")
    _put_with_httpx(upload["parts"], data)  # signed for that host: S3 accepts it there
    file = _complete(alice, upload["id"]).json()
    location = alice.client.get(f"/api/v2/files/{file['id']}/content?redirect=true")["Location"]
    assert location.startswith(f"{public}/") and httpx.get(location).content == data


def test_on_filesystem_storage_uploads_say_to_use_the_api_upload(alice: ApiClient) -> None:
    refused = _start(alice, "x", 10)
    assert refused.status_code == 409
    assert "need S3 storage" in refused.json()["detail"] and "POST /api/v2/files" in refused.json()["detail"]
    created = alice.upload("x.txt", b"0123456789")
    assert created.status_code == 201
    # redirect=true has nothing to redirect to: the bytes are streamed as without it
    content = alice.client.get(f"/api/v2/files/{created.json()['id']}/content?redirect=true")
    assert content.status_code == 200 and _content(content) == b"0123456789"


@pytest.mark.parametrize(
    ("size", "part_bytes"),
    [
        (0, 5 * MiB),
        (5 * MiB, 5 * MiB),
        (5 * MiB + 1, 5 * MiB),
        (5 * 1024**4, 64 * MiB),
        (10_000 * 5 * MiB + 1, 5 * MiB),
    ],
)
def test_parts_cover_the_size_within_s3_limits(size: int, part_bytes: int) -> None:
    part_size, sizes = part_sizes(size, part_bytes)
    assert sum(sizes) == size and len(sizes) <= MAX_PARTS
    assert all(s == part_size for s in sizes[:-1]) and 0 <= sizes[-1] <= part_size
    assert part_size >= part_bytes and part_size <= 5 * 1024**3
