"""Fault injection with the real services: the worker killed with SIGKILL mid-run, over and over.
Prints its figures. EMGAPI_FAULT_ROUNDS sets the number of rounds (default 20)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import pytest

from workflows.tests.conftest import WorkerProcess
from workflows.tests.test_integration import TERMINAL, Api

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROUNDS = int(os.environ.get("EMGAPI_FAULT_ROUNDS", "20"))


@pytest.fixture
def api(live_server: Any, calculation_worker: WorkerProcess, dispatching: None) -> Api:
    return Api(live_server.url)


def _reconcile_until(api: Api, calculation_id: str, attempt: int, timeout_seconds: float = 30) -> float:
    """Run the reconciler (as its schedule would) until the calculation is on `attempt`; seconds taken."""
    from workflows.flows.reconcile_calculations import reconcile_calculations_flow

    started = time.monotonic()
    while api.http.get(f"/calculations/{calculation_id}").json()["attempts"] < attempt:
        assert time.monotonic() - started < timeout_seconds, "the reconciler did not retry the lost calculation"
        asyncio.run(reconcile_calculations_flow())
        time.sleep(0.5)
    return time.monotonic() - started


def test_a_worker_killed_mid_run_costs_a_retry_never_a_calculation(
    api: Api, calculation_worker: WorkerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    recoveries, totals = [], []
    for round_number in range(ROUNDS):
        started = time.monotonic()
        text = f"round {round_number}\n".encode()
        inputs = {"text": api.upload(f"r{round_number}.txt", text)}
        submitted = api.submit("sleep", inputs, {"seconds": 1}, use_cache=False)
        calc = api.wait_for(submitted.json()["id"], {"RUNNING"})
        assert calc["provenance"]["attempts"][0]["worker"].endswith(f":{calculation_worker.pid}")

        calculation_worker.kill()  # mid-run: the tool is still sleeping
        calculation_worker.start()
        recoveries.append(_reconcile_until(api, calc["id"], attempt=2))

        final = api.wait_for(calc["id"], TERMINAL, timeout_seconds=60)
        assert final["state"] == "COMPLETE", final["error"]
        assert final["attempts"] == 2 and "heartbeat lost" in final["error"]
        assert list(final["outputs"]) == ["copy"] and len(final["outputs"]["copy"]) == 1  # no duplicated outputs
        assert api.content(final["outputs"]["copy"][0]) == text
        assert [a["attempt"] for a in final["provenance"]["attempts"]] == [1, 2]
        totals.append(time.monotonic() - started)
    with capsys.disabled():
        print(
            f"\nFAULTS: worker SIGKILLed mid-run {ROUNDS} times: {ROUNDS}/{ROUNDS} calculations COMPLETE on attempt 2, "
            f"one output each; stale heartbeat -> retry queued in median {statistics.median(recoveries):.1f} s "
            f"(stale after 3 s), submit -> COMPLETE median {statistics.median(totals):.1f} s, max {max(totals):.1f} s"
        )


def test_identical_submissions_arriving_together_run_once(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    molecules = api.upload("together.smi", b"CCCCO\n")
    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(lambda _: api.submit("obabel", {"molecules": molecules}, {}), range(50)))
    assert {answer.status_code for answer in answers} <= {200, 202}
    finals = [api.wait_for(answer.json()["id"], TERMINAL) for answer in answers]
    assert {calc["state"] for calc in finals} == {"COMPLETE"}
    executed = [calc for calc in finals if calc["flow_run_id"] is not None]
    assert len(executed) == 1 and executed[0]["cached_from"] is None
    assert all(calc["cached_from"] == executed[0]["id"] for calc in finals if calc is not executed[0])
    outputs = {api.content(calc["outputs"]["molecules"][0]) for calc in finals}
    assert len(outputs) == 1
    with capsys.disabled():
        print("\nCONCURRENCY: 50 identical submissions at once -> 50 COMPLETE, 1 execution (1 flow run), 49 followers")


def test_a_request_retried_with_its_idempotency_key_creates_one_calculation(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"inputs": {"molecules": api.upload("key.smi", b"CCCCCO\n")}, "params": {}, "use_cache": False}
    before = api.http.get("/calculations", params={"tool": "obabel", "limit": 1}).json()["count"]

    def post(_: int) -> Any:
        return api.http.post("/tools/obabel/calculations", json=body, headers={"Idempotency-Key": "retry-42"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    accepted = {answer.json()["id"] for answer in answers if answer.status_code == 202}
    assert len(accepted) == 1 and {answer.status_code for answer in answers} <= {202, 409}
    assert post(0).json()["id"] in accepted  # a later retry is answered from the record
    assert api.http.get("/calculations", params={"tool": "obabel", "limit": 1}).json()["count"] == before + 1


def test_submissions_while_prefect_is_down_all_complete_once_it_is_back(
    api: Api, prefect_server_process: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from emgapiv2.config import get_settings
    from workflows.flows.reconcile_calculations import reconcile_calculations_flow

    down_seconds = float(os.environ.get("EMGAPI_PREFECT_DOWN_SECONDS", "60"))
    monkeypatch.setattr(get_settings().reconciler, "dispatch_after_seconds", 0)
    molecules = api.upload("outage.smi", b"CCCCCCCO\n")
    prefect_server_process.stop()
    stopped = time.monotonic()
    ids, slowest = [], 0.0
    try:
        for _ in range(100):  # spread over the outage, as clients would keep coming
            posted = time.monotonic()
            answer = api.submit("obabel", {"molecules": molecules}, {}, use_cache=False)
            slowest = max(slowest, time.monotonic() - posted)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
            time.sleep(down_seconds * 0.8 / 100)
        time.sleep(max(down_seconds - (time.monotonic() - stopped), 0))
    finally:
        prefect_server_process.start()  # the other tests need it
    restarted = time.monotonic()

    states: dict[str, str] = {}
    while time.monotonic() - restarted < 300:
        asyncio.run(reconcile_calculations_flow())  # as its schedule would, now that Prefect answers
        items = api.http.get("/calculations", params={"tool": "obabel", "limit": 1000}).json()["items"]
        states = {calc["id"]: calc["state"] for calc in items if calc["id"] in set(ids)}
        if all(state in TERMINAL for state in states.values()):
            break
        time.sleep(2)
    assert list(states.values()).count("COMPLETE") == 100, states
    with capsys.disabled():
        print(
            f"\nOUTAGE: Prefect stopped {down_seconds:.0f} s; 100 submissions during it, all accepted (slowest POST "
            f"{slowest:.2f} s); all 100 COMPLETE {time.monotonic() - restarted:.0f} s after Prefect was back"
        )


def _reconcile_until_terminal(api: Api, calculation_id: str, timeout_seconds: float = 120) -> dict[str, Any]:
    from workflows.flows.reconcile_calculations import reconcile_calculations_flow

    deadline = time.monotonic() + timeout_seconds
    while True:
        answer = api.http.get(f"/calculations/{calculation_id}")
        # the test server's first request on a connection the restart broke fails; the next reconnects
        calc = dict(answer.json()) if answer.status_code == 200 else {"state": f"HTTP {answer.status_code}"}
        if calc["state"] in TERMINAL:
            return calc
        assert time.monotonic() < deadline, f"still {calc['state']} after {timeout_seconds} s"
        try:
            asyncio.run(reconcile_calculations_flow())
        except Exception:  # Prefect itself may still be reconnecting to the database
            pass
        time.sleep(1)


def test_a_database_restart_mid_run_is_recovered(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    from django.db import connection

    pg_dir = os.environ.get("EMGAPI_TEST_PG_DIR")
    if not pg_dir:
        pytest.skip("needs the PostgreSQL cluster that scripts/test.sh starts (EMGAPI_TEST_PG_DIR)")
    text = b"through a database restart\n"
    answer = api.submit("sleep", {"text": api.upload("pg.txt", text)}, {"seconds": 3}, use_cache=False)
    calc = api.wait_for(answer.json()["id"], {"RUNNING"})
    started = time.monotonic()
    subprocess.run(["bash", "-c", f'. scripts/pg.sh && pg_restart "{pg_dir}"'], check=True)
    restart_seconds = time.monotonic() - started
    connection.close()  # this test's own connection died with the server
    final = _reconcile_until_terminal(api, calc["id"])
    assert final["state"] == "COMPLETE", final["error"]
    assert len(final["outputs"]["copy"]) == 1 and api.content(final["outputs"]["copy"][0]) == text
    with capsys.disabled():
        print(
            f"\nDATABASE: PostgreSQL restarted mid-run ({restart_seconds:.1f} s); the calculation ended COMPLETE on "
            f"attempt {final['attempts']}, {time.monotonic() - started:.0f} s after the restart began"
        )
