"""The worker's one change to Prefect's engine, in its own process only (Prefect is pinned, and the
patch fails loudly if an upgrade removes what it replaces: `workflows/tests/worker/test_prefect_patch.py`)."""

from __future__ import annotations

from contextlib import nullcontext

import prefect.flow_engine


def disable_suspension_observer() -> None:
    """Prefect 3.8's flow engine starts, for every flow run of a deployment, a thread with its own
    event loop and a websocket to the server, only to notice a suspension requested from the UI;
    and it blocks the caller's event loop until that websocket is up. In this worker that is a
    thread and ~1 MB per waiting calculation, and every flow-run start stalls the whole loop
    (1,000 Slurm calculations in flight passed 1.2 GB). Calculations never suspend (they are
    cancelled, through the API), so the observer is switched off here, in this process only."""
    if not hasattr(prefect.flow_engine, "observe_flow_run_suspension"):
        raise RuntimeError("prefect.flow_engine.observe_flow_run_suspension is gone: review this patch")
    prefect.flow_engine.observe_flow_run_suspension = lambda *args, **kwargs: nullcontext()  # type: ignore[assignment]
