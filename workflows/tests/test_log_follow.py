"""Following a running tool's log through the API (`GET /calculations/{id}/logs?stream=…&offset=…`),
with a real Prefect server and worker: the log grows while the tool runs, ends complete with every
byte, and is read from storage once the attempt's directory is gone."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from calculations.workdirs import attempt_dir
from emgapiv2.config import get_settings
from workflows.tests.test_integration import TERMINAL, Api

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CHUNK = 4096


@pytest.fixture
def api(live_server: Any, calculation_worker: None, dispatching: None, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setattr(get_settings(), "log_chunk_bytes", CHUNK)  # the live server runs in this process
    return Api(live_server.url, user="follower")


def _follow(api: Api, calculation_id: str, offset: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """What `emgapi logs ID --follow` does: ask again from next_offset until complete."""
    text, chunks = "", []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        params: dict[str, Any] = {"stream": "stdout", "offset": offset}
        chunk: dict[str, Any] = api.http.get(f"/calculations/{calculation_id}/logs", params=params).json()
        assert chunk["offset"] == offset and 0 <= chunk["next_offset"] - offset <= CHUNK
        chunks.append(chunk)
        text, offset = text + chunk["data"], chunk["next_offset"]
        if chunk["complete"]:
            return text, chunks
        time.sleep(0.1)
    raise AssertionError(f"not complete after 120 s: {chunks[-1]}")


@pytest.mark.parametrize("backend", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_log_followed_while_the_tool_runs_grows_then_ends_complete(
    api: Api, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "slurm":
        request.getfixturevalue("slurm_cluster")
    lines = 300  # about 7 kB in 6 s: several chunks, and several polls while it runs
    expected = "".join(f"line {i} ✓ ünïcode\n" for i in range(lines))
    params = {"lines": lines, "interval_seconds": 0.02}
    response = api.submit("chatter", {"text": api.upload("t.txt", b"x\n")}, params, backend=backend, use_cache=False)
    assert response.status_code == 202, response.text
    calc_id = response.json()["id"]

    text, chunks = _follow(api, calc_id)
    assert text == expected
    growing = [chunk["next_offset"] for chunk in chunks if chunk["data"] and not chunk["complete"]]
    assert len(growing) >= 3 and growing == sorted(set(growing))  # it grew while the tool ran
    assert "\ufffd" not in text  # no chunk split a character

    calc = api.wait_for(calc_id, TERMINAL)
    assert calc["state"] == "COMPLETE", calc["error"]
    assert calc["provenance"]["attempts"][0]["stdout_sha256"] == hashlib.sha256(expected.encode()).hexdigest()
    assert not attempt_dir(calc["id"], 1).exists()  # the worker removed it: what follows is read from storage
    again, chunks = _follow(api, calc_id)
    assert again == expected and len(chunks) >= 2 and chunks[-1]["complete"]
