"""reconcile-calculations: the reconciler's sweeps once, by hand (`task prefect -- deployment run …`);
every calculation worker runs them as a service (`workflows/worker/reconciler.py`)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from workflows.worker.reconciler import reconcile_once


@flow(name="reconcile-calculations", persist_result=False)
async def reconcile_calculations_flow() -> dict[str, int]:
    """The sweeps once, by hand (every calculation worker runs them as a service)."""
    counts = await reconcile_once()
    if any(counts.values()):
        get_run_logger().info("reconciled: %s", counts)
    return counts
