"""Every request is bounded in size and memory, and every way of getting one wrong is named."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.core.files.uploadedfile import SimpleUploadedFile

from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]
WORKER_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024


def _post_raw(client: ApiClient, path: str, body: bytes) -> tuple[Any, int]:
    """The answer, and the most memory the request allocated on its way through Django."""
    tracemalloc.start()
    try:
        answer = client.client.post(f"/api/v2{path}", body, content_type="application/json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return answer, peak


def test_half_a_million_unknown_parameters_are_refused_without_growing_the_worker(
    alice: ApiClient, uploaded: Upload
) -> None:
    params = {f"p{i}": i for i in range(500_000)}
    body = json.dumps({"inputs": {"contigs": uploaded("g.fna", b">c\nACGT\n")}, "params": params}).encode()
    assert len(body) > 9_000_000
    answer, peak = _post_raw(alice, "/tools/prodigal/calculations", body)
    assert answer.status_code == 413 and answer["Content-Type"] == "application/json"
    assert "limit for a JSON body is" in answer.json()["detail"]
    assert peak < WORKER_GROWTH_LIMIT_BYTES, f"the request took {peak / 1e6:.0f} MB"


def test_a_small_body_with_too_many_keys_is_refused_before_it_is_validated(alice: ApiClient) -> None:
    limit = get_settings().max_json_members
    body = json.dumps({"inputs": {}, "params": {f"{i}": 0 for i in range(limit + 1)}}).encode()
    assert len(body) < get_settings().max_json_bytes
    answer, peak = _post_raw(alice, "/tools/prodigal/calculations", body)
    assert answer.status_code == 413 and f"more than {limit} keys" in answer.json()["detail"]
    assert peak < WORKER_GROWTH_LIMIT_BYTES


def test_thousands_of_wrong_keys_get_a_short_answer(alice: ApiClient, uploaded: Upload) -> None:
    params = {f"wrong{i}": i for i in range(5_000)}
    body = json.dumps({"inputs": {"contigs": uploaded("g.fna", b">c\nACGT\n")}, "params": params}).encode()
    answer, peak = _post_raw(alice, "/tools/prodigal/calculations", body)
    assert answer.status_code == 422
    shown = get_settings().max_validation_errors
    result = answer.json()
    assert len(result["errors"]) == shown and result["error_count"] == 5_000
    assert result["detail"].endswith(f"and {5_000 - shown} more errors")
    assert "params.wrong0: unknown field" in result["detail"]
    assert len(answer.content) < 10_000  # the user's 5,000 keys are not echoed back
    assert peak < WORKER_GROWTH_LIMIT_BYTES


def test_misspelled_top_level_keys_are_named_not_ignored(alice: ApiClient, uploaded: Upload) -> None:
    body = {"inputs": {"contigs": uploaded("g.fna", b">c\nACGT\n")}, "param": {"mode": "meta"}, "usecache": False}
    answer = alice.post("/tools/prodigal/calculations", body)
    assert answer.status_code == 422  # not a 202 that runs with defaults and the cache
    assert "param: unknown field" in answer.json()["detail"] and "usecache: unknown field" in answer.json()["detail"]
    assert alice.get("/calculations").json()["count"] == 0


def test_a_large_json_body_is_a_json_413_that_says_what_to_do(alice: ApiClient) -> None:
    body = json.dumps({"inputs": {}, "params": {"mode": "x" * 10_000_000}}).encode()
    answer = alice.client.post("/api/v2/tools/prodigal/calculations", body, content_type="application/json")
    assert answer.status_code == 413 and answer["Content-Type"] == "application/json"
    assert "POST /api/v2/files" in answer.json()["detail"]


def test_two_file_fields_are_refused(alice: ApiClient) -> None:
    answer = alice.client.post(
        "/api/v2/files", {"file": [SimpleUploadedFile("a.fna", b">a\nA\n"), SimpleUploadedFile("b.fna", b">b\nC\n")]}
    )
    assert answer.status_code == 422 and "2 fields named 'file'" in answer.json()["detail"]
    assert alice.get("/files").json()["count"] == 0  # neither was kept


def test_an_upload_that_is_not_multipart_says_how_to_send_it(alice: ApiClient) -> None:
    answer = alice.client.post("/api/v2/files", b">a\nACGT\n", content_type="text/plain")
    assert answer.status_code == 422
    assert "multipart/form-data with one field named 'file'" in answer.json()["detail"]
    misnamed = alice.client.post("/api/v2/files", {"upload": SimpleUploadedFile("a.fna", b">a\nA\n")})
    assert misnamed.status_code == 422 and "no field named 'file'" in misnamed.json()["detail"]
    assert "'upload'" in misnamed.json()["detail"]


def test_an_upload_larger_than_the_limit_is_refused_before_it_is_read(alice: ApiClient) -> None:
    too_big = get_settings().max_upload_bytes + 10 * 1024 * 1024
    answer = alice.client.post(
        "/api/v2/files", b"", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(too_big)
    )
    assert answer.status_code == 413 and "limit" in answer.json()["detail"]


def test_download_names_survive_quotes_and_non_ascii(alice: ApiClient, uploaded: Upload) -> None:
    for name in ('a"b.fa', "基因组.fa", "semi;colon.fa"):
        file_id = uploaded(name, b">a\nACGT\n")
        header = alice.client.get(f"/api/v2/files/{file_id}/content")["Content-Disposition"]
        fallback = header.split('filename="', 1)[1].split('"', 1)[0]
        assert '"' not in fallback and fallback.isascii()  # a quoted string that stays well-formed
        exact = header.split("filename*=UTF-8''", 1)[1]
        assert unquote(exact) == name  # RFC 6266: clients that read filename* get the exact name


def test_head_on_a_download_gives_its_headers(alice: ApiClient, uploaded: Upload) -> None:
    file_id = uploaded("g.fna", b">a\nACGT\n")
    answer = alice.client.head(f"/api/v2/files/{file_id}/content")
    assert answer.status_code == 200 and answer.content == b""
    assert (
        answer["Content-Length"] == "8" and answer["ETag"].strip('"') == alice.get(f"/files/{file_id}").json()["sha256"]
    )


def test_an_unknown_tool_filter_is_a_422_that_lists_the_tools(alice: ApiClient) -> None:
    answer = alice.get("/calculations", tool="nosuch")
    assert answer.status_code == 422 and "unknown tool 'nosuch'" in answer.json()["detail"]
    assert "prodigal" in answer.json()["detail"]


def test_api_answers_are_never_cached_and_the_admin_has_a_csp(alice: ApiClient) -> None:
    assert alice.get("/files")["Cache-Control"] == "no-store"
    login = alice.client.get("/admin/login/")
    assert "default-src 'self'" in login["Content-Security-Policy"]


def test_a_json_body_sent_as_another_content_type_is_bounded_too(alice: ApiClient) -> None:
    limit = get_settings().max_json_members
    body = json.dumps({"inputs": {}, "params": {f"{i}": 0 for i in range(limit + 1)}}).encode()
    tracemalloc.start()
    try:
        answer = alice.client.post("/api/v2/tools/prodigal/calculations", body, content_type="text/plain")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 400 <= answer.status_code < 500 and peak < WORKER_GROWTH_LIMIT_BYTES  # parsed with the same bounds
