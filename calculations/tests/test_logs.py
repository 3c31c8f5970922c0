"""Following a log: one stream from an offset, a bounded chunk at a time, live from the attempt's
work directory, then from storage once the attempt ended (a real tool: workflows/tests/test_log_follow.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from calculations.actions import do_create_api_token
from calculations.models import Calculation
from calculations.provenance import update_attempt
from calculations.states import RunState
from calculations.storage import get_storage
from calculations.tests.factories import make_calculation
from calculations.workdirs import log_paths
from conftest import ApiClient
from emgapiv2.config import get_settings

S = RunState
CHUNK = 4096


@pytest.fixture
def carol(db: None, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    monkeypatch.setattr(get_settings(), "log_chunk_bytes", CHUNK)
    return ApiClient(do_create_api_token("carol"))


def _running_with_stdout(content: bytes) -> Calculation:
    calc = make_calculation(S.RUNNING)
    stdout, _ = log_paths(calc.id, calc.attempt)
    stdout.parent.mkdir(parents=True)
    stdout.write_bytes(content)
    return calc


def _end(calc: Calculation, stdout: bytes) -> None:
    """What the worker does as the attempt ends: the logs stored, their sha256s in the provenance."""
    sha256 = get_storage().put(io.BytesIO(stdout)).sha256
    provenance = update_attempt(calc.provenance, calc.attempt, stdout_sha256=sha256)
    Calculation.objects.filter(id=calc.id).update(state=S.COMPLETE, provenance=provenance)
    for path in log_paths(calc.id, calc.attempt):  # the worker removes a COMPLETE attempt's directory
        path.unlink(missing_ok=True)


def _follow(client: ApiClient, calc: Calculation, offset: int = 0) -> tuple[str, list[dict[str, Any]]]:
    text, chunks = "", []
    while True:
        chunk = client.get(f"/calculations/{calc.id}/logs", stream="stdout", offset=offset).json()
        assert chunk["offset"] == offset and chunk["next_offset"] - offset <= CHUNK
        chunks.append(chunk)
        text += chunk["data"]
        offset = chunk["next_offset"]
        if chunk["complete"] or not chunk["data"]:
            return text, chunks


@pytest.mark.parametrize("where", ["filesystem", "s3"])
def test_a_log_is_followed_live_then_from_storage_without_splitting_a_character(
    carol: ApiClient, where: str, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        request.getfixturevalue("s3_storage")
    # 3-byte characters over several chunks: a cut at a fixed size would fall inside one of them
    first = "".join(f"line {i}: ✓ ünïcode\n" for i in range(400)).encode()
    calc = _running_with_stdout(first)
    text, chunks = _follow(carol, calc)
    assert text == first.decode() and len(chunks) > 2
    assert not any(chunk["complete"] for chunk in chunks)  # it still runs: more may come
    assert all("\ufffd" not in chunk["data"] for chunk in chunks)

    more = b"the end \xe2\x9c\x93\n"
    stdout, _ = log_paths(calc.id, calc.attempt)
    with stdout.open("ab") as handle:  # the tool writes on
        handle.write(more[:10])  # ... stopping inside the character
    partial = carol.get(f"/calculations/{calc.id}/logs", stream="stdout", offset=len(first)).json()
    assert partial["data"] == "the end " and partial["next_offset"] == len(first) + 8
    with stdout.open("ab") as handle:
        handle.write(more[10:])
    _end(calc, first + more)
    rest, chunks = _follow(carol, calc, offset=partial["next_offset"])
    assert rest == "✓\n" and chunks[-1]["complete"]
    whole, chunks = _follow(carol, calc)  # from storage: the work directory is gone
    assert whole == (first + more).decode() and chunks[-1]["complete"] and len(chunks) > 2


def test_offsets_and_streams_are_checked(carol: ApiClient) -> None:
    calc = _running_with_stdout(b"hello\n")
    logs = f"/calculations/{calc.id}/logs"
    assert carol.get(logs, stream="stdout", offset=-1).status_code == 422
    assert carol.get(logs, stream="stdin").status_code == 422
    assert carol.get(logs, stream="stdout", offset=2**70).status_code == 422
    refused = carol.get(logs, offset=3)
    assert refused.status_code == 422 and "need stream=stdout or stream=stderr" in refused.json()["detail"]
    assert carol.get(logs, stream="stdout", attempt=2).status_code == 422  # it has one attempt
    past = carol.get(logs, stream="stdout", offset=1000).json()
    assert (past["data"], past["next_offset"], past["complete"]) == ("", 1000, False)
    assert carol.get(logs, stream="stderr").json()["data"] == ""  # nothing written there yet
    # without stream: the tails of both, as before
    assert carol.get(logs).json() == {"attempt": 1, "stdout": "hello\n", "stderr": "", "truncated": False}


def test_a_calculation_that_ended_without_logs_is_complete_at_once(carol: ApiClient) -> None:
    calc = make_calculation(S.CANCELED, username="carol")
    chunk = carol.get(f"/calculations/{calc.id}/logs", stream="stderr").json()
    assert (chunk["data"], chunk["next_offset"], chunk["complete"]) == ("", 0, True)


# past the largest file the filesystem can hold (ext4: 16 TiB), seek() itself fails (EINVAL)
HUGE_OFFSETS = [17592186040321, 2**62 - 1, 2**62]


@pytest.mark.parametrize("where", ["filesystem", "s3"])
def test_any_offset_of_an_ended_calculations_stored_log_answers_no_data(
    carol: ApiClient, where: str, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        request.getfixturevalue("s3_storage")
    calc = _running_with_stdout(b"hello\n")
    _end(calc, b"hello\n")
    logs = f"/calculations/{calc.id}/logs"
    for offset in [6, 7, *HUGE_OFFSETS]:
        answer = carol.get(logs, stream="stdout", offset=offset)
        assert answer.status_code == 200, (offset, answer.content)
        assert (answer.json()["data"], answer.json()["next_offset"], answer.json()["complete"]) == ("", offset, True)
    assert carol.get(logs, stream="stdout", offset=3).json()["data"] == "lo\n"


def test_any_offset_of_a_running_calculations_live_log_answers_no_data(carol: ApiClient) -> None:
    calc = _running_with_stdout(b"hello\n")
    for offset in HUGE_OFFSETS:
        answer = carol.get(f"/calculations/{calc.id}/logs", stream="stdout", offset=offset)
        assert answer.status_code == 200, (offset, answer.content)
        assert (answer.json()["data"], answer.json()["complete"]) == ("", False)


@pytest.mark.parametrize("where", ["filesystem", "s3"])
def test_storage_reads_nothing_from_an_offset_past_the_end(where: str, request: pytest.FixtureRequest) -> None:
    if where == "s3":
        request.getfixturevalue("s3_storage")
    storage = get_storage()
    sha256 = storage.put(io.BytesIO(b"0123456789")).sha256
    for offset in [10, 11, *HUGE_OFFSETS]:
        assert list(storage.iter_chunks(sha256, offset=offset)) == [], offset
        assert list(storage.iter_chunks(sha256, offset=offset, limit_bytes=5)) == [], offset
    assert b"".join(storage.iter_chunks(sha256, offset=7, limit_bytes=100)) == b"789"
