"""One attempt of a TES task in-process (no Prefect), for what ends it before any executor runs: the
run through the live API, Prefect, the worker and real containers is workflows/tests/test_tes.py."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from django.test import Client

from calculations.models import Calculation
from workflows.execution.calculation_runs import CalculationRun

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)


class NoBackend:
    """Whatever ends the attempt here must do so before a job is submitted."""

    kind = "container"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the backend was used ({name}) for a task that cannot run")


def _submit(token: str, body: dict[str, Any]) -> str:
    client = Client(headers={"Authorization": f"Bearer {token}"})
    response = client.post("/ga4gh/tes/v1/tasks", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return str(response.json()["id"])


def _full_view(token: str, task_id: str) -> dict[str, Any]:
    client = Client(headers={"Authorization": f"Bearer {token}"})
    view: dict[str, Any] = client.get(f"/ga4gh/tes/v1/tasks/{task_id}", {"view": "FULL"}).json()
    return view


def test_a_url_this_deployment_cannot_reach_ends_the_task_system_error_at_once_saying_why(alice_token: str) -> None:
    """What the GA4GH compliance suite sends (s3:// without S3 storage): accepted, then SYSTEM_ERROR on
    the first attempt, never retried, with a system log naming each URL and why; no executor ran."""
    task_id = _submit(
        alice_token,
        {
            "name": "CompTest",
            "executors": [{"image": "emgapi/obabel:3.1.1", "command": ["echo", "hello"]}],
            "inputs": [{"url": "s3://my-object-store/file-1", "path": "/data/file1"}],
            "outputs": [{"url": "s3://my-object-store/outfile-1", "path": "/data/outfile"}],
        },
    )
    run = CalculationRun(task_id, logger, backend_for=lambda kind: NoBackend())  # type: ignore[arg-type]
    asyncio.run(run.execute())

    calc = Calculation.objects.get(id=task_id)
    assert (calc.state, calc.attempt, calc.not_before) == ("SYSTEM_ERROR", 1, None)
    view = _full_view(alice_token, task_id)
    assert view["state"] == "SYSTEM_ERROR"
    (log,) = view["logs"]
    assert log["logs"] == [] and log["outputs"] == []
    (system_log,) = log["system_logs"]
    assert system_log.startswith("cannot run this task here: inputs[0].url: 's3://my-object-store/file-1': ")
    assert "this deployment keeps files on its filesystem and reads no s3:// objects" in system_log
    assert "; outputs[0].url: 's3://my-object-store/outfile-1': this deployment stores outputs as" in system_log
