"""The worker's adjustments to Prefect's engine (the in-process execution is covered by test_integration)."""

from __future__ import annotations

from contextlib import nullcontext
from uuid import uuid4

import prefect.flow_engine

from workflows.worker.prefect_patch import disable_suspension_observer


def test_the_per_run_suspension_observer_is_switched_off() -> None:
    # If a Prefect upgrade renames the observer, this fails instead of silently costing a thread
    # and a websocket per waiting calculation again.
    disable_suspension_observer()
    observer = prefect.flow_engine.observe_flow_run_suspension(uuid4(), None)  # type: ignore[arg-type]
    assert isinstance(observer, nullcontext)
