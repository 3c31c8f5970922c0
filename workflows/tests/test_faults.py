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
