"""Hostile input gets a clear 4xx, never a 500, and nothing is written outside its place."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ApiClient
from emgapiv2.config import get_settings

Upload = Callable[[str, bytes], str]


@pytest.mark.parametrize(
    "name",
    ["../../../../tmp/owned.fna", "..\\..\\windows\\evil.fna", "/etc/passwd", "...hidden", "a\x00b\nc\r.fna",
     "x" * 1000 + ".fna", "$(reboot);`id`|.fna"],
)  # fmt: skip
def test_file_names_cannot_escape_or_inject(alice: ApiClient, name: str) -> None:
    before = set(Path("/tmp").iterdir())
    answer = alice.upload(name, b">c\nACGT\n")
    assert answer.status_code == 201
    stored = answer.json()["name"]
    assert stored and "/" not in stored and "\\" not in stored and not stored.startswith(".")
    assert stored.isprintable() and len(stored) <= 255
    assert not {path.name for path in set(Path("/tmp").iterdir()) - before} & {"owned.fna", "evil.fna", "passwd"}
    # the bytes live only under the blob root, named by their hash
    assert all(get_settings().blob_root in path.parents for path in get_settings().blob_root.rglob("*"))


@pytest.mark.parametrize(
    ("tool", "params", "message"),
    [
        ("prodigal", {"mode": "meta; rm -rf /"}, "params.mode"),
        ("prodigal", {"mode": "$(reboot)"}, "params.mode"),
        ("prodigal", {"translation_table": "11 && curl evil"}, "params.translation_table"),
        ("obabel", {"output_format": "smi|sh"}, "params.output_format"),
        ("prodigal", {"mode": "single", "extra": "`id`"}, "params.extra: unknown field"),
    ],
)
def test_shell_metacharacters_in_parameters_are_refused_by_validation(
    alice: ApiClient, uploaded: Upload, tool: str, params: dict[str, object], message: str
) -> None:
    role = "contigs" if tool == "prodigal" else "molecules"
    content = b">c\nACGT\n" if tool == "prodigal" else b"CCO\n"
    answer = alice.post(
        f"/tools/{tool}/calculations", {"inputs": {role: uploaded("in.fna", content)}, "params": params}
    )
    assert answer.status_code == 422 and message in answer.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'"a string"',
        b'{"inputs": null, "params": null}',
        b'{"inputs": {"contigs": {"$gt": ""}}, "params": {}}',
        json.dumps({"inputs": {}, "params": {}, "nested": [[[[[[[[[[[[]]]]]]]]]]]]}).encode(),
        b'{"inputs": {}, "params": {"translation_table": Infinity}}',  # Python parses it; JSON has no such value
        b'{"inputs": {}, "params": {"translation_table": NaN}}',
    ],
)
def test_malformed_bodies_are_a_4xx(alice: ApiClient, body: bytes) -> None:
    answer = alice.client.post("/api/v2/tools/prodigal/calculations", body, content_type="application/json")
    assert 400 <= answer.status_code < 500, answer.content
    assert answer.json()["detail"]


def test_a_number_too_large_for_a_float_is_refused_not_taken_as_infinity(alice: ApiClient) -> None:
    body = b'{"inputs": {}, "params": {"translation_table": 1e999}}'
    answer = alice.client.post("/api/v2/tools/prodigal/calculations", body, content_type="application/json")
    assert answer.status_code == 400 and "1e999 is too large a number" in answer.json()["detail"]


def test_a_huge_json_body_is_a_4xx_not_a_crash(alice: ApiClient) -> None:
    body = json.dumps({"inputs": {}, "params": {"mode": "x" * 5_000_000}}).encode()
    answer = alice.client.post("/api/v2/tools/prodigal/calculations", body, content_type="application/json")
    assert 400 <= answer.status_code < 500


def test_a_binary_file_given_to_a_text_tool_is_refused(alice: ApiClient, uploaded: Upload) -> None:
    answer = alice.post(
        "/tools/prodigal/calculations", {"inputs": {"contigs": uploaded("x.fna", bytes(range(256)) * 100)}}
    )
    assert answer.status_code == 422 and "is binary" in answer.json()["detail"]


def test_nul_bytes_are_refused_not_stored(alice: ApiClient, uploaded: Upload) -> None:
    assert alice.get("/calculations", tool="obabel\x00").status_code == 422
    body = {"inputs": {"molecules": uploaded("m.smi", b"CCO\n")}, "params": {"input_format": "smi\x00"}}
    answer = alice.post("/tools/obabel/calculations", body)
    assert answer.status_code == 422


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (b"HMMER3/f [3.3.2]\nNAME x\n", "model 'x' is cut short (no closing '//')"),
        (b"HMMER3/f [3.3.2]\nNAME x\nLENG 2\nALPH amino\nHMM A C\n      1 0.1 0.2\n//\n", "declares LENG 2 but has 1"),
        (b"HMMER3/f [3.3.2]\nLENG 1\nALPH amino\nHMM A C\n      1 0.1 0.2\n//\n", "lacks NAME"),
    ],
)
def test_a_damaged_hmm_profile_is_refused_not_searched(
    alice: ApiClient, uploaded: Upload, profile: bytes, message: str
) -> None:
    # hmmsearch would report "no hits" for it: a negative result the user would wrongly trust
    inputs = {"profile": uploaded("p.hmm", profile), "sequences": uploaded("s.faa", b">p\nMKV\n")}
    answer = alice.post("/tools/hmmsearch/calculations", {"inputs": inputs})
    assert answer.status_code == 422 and message in answer.json()["detail"]
    assert "input 'profile'" in answer.json()["detail"]


def test_a_complete_profile_of_several_models_is_accepted(alice: ApiClient, uploaded: Upload) -> None:
    whole = (Path(__file__).parents[2] / "demo" / "data" / "family.hmm").read_bytes()
    inputs = {"profile": uploaded("p.hmm", whole * 2), "sequences": uploaded("s.faa", b">p\nMKV\n")}
    assert alice.post("/tools/hmmsearch/calculations", {"inputs": inputs}).status_code == 202


def test_a_file_whose_bytes_storage_cannot_give_is_a_503_before_any_byte(alice: ApiClient, uploaded: Upload) -> None:
    from calculations.models import File
    from emgapiv2.config import get_settings

    file = File.objects.get(id=uploaded("m.smi", b"CCO\n"))
    for blob in get_settings().blob_root.rglob(file.sha256):
        blob.unlink()
    answer = alice.client.get(f"/api/v2/files/{file.id}/content")
    assert answer.status_code == 503 and "storage" in answer.json()["detail"]
