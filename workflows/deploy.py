"""Register flows as deployments on the calculation work pool: `task deploy-flow FLOW=<name|all>`."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta
from typing import Any


def _flows() -> dict[str, tuple[Any, dict[str, Any]]]:
    from emgapiv2.config import get_settings
    from workflows.flows.reconcile_calculations import reconcile_calculations_flow
    from workflows.flows.run_calculation import run_calculation_flow

    interval = timedelta(seconds=get_settings().reconciler.interval_seconds)
    return {
        "run-calculation": (run_calculation_flow, {}),
        "reconcile-calculations": (reconcile_calculations_flow, {"interval": interval}),
    }


def deploy(names: list[str]) -> list[str]:
    """Create or update the named deployments; return their full names."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType

    from emgapiv2.config import get_settings
    from workflows.worker import ensure_work_pool

    pool = get_settings().prefect.work_pool

    async def create_pool() -> None:
        async with get_client() as client:
            await ensure_work_pool(client, pool)

    asyncio.run(create_pool())
    flows = _flows()
    unknown = sorted(set(names) - set(flows))
    if unknown:
        raise SystemExit(f"unknown flow(s) {', '.join(unknown)}; known: {', '.join(sorted(flows))}")
    deployed = []
    for name in names:
        flow, options = flows[name]
        deployment = flow.to_deployment(
            name=name, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH, **options
        )
        deployment.apply(work_pool_name=pool)
        deployed.append(f"{flow.name}/{name}")
    return deployed


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("flows", nargs="+", help="flow names, or 'all'")
    args = parser.parse_args()
    names = sorted(_flows()) if args.flows == ["all"] else args.flows
    for full_name in deploy(names):
        print(f"deployed {full_name}")


if __name__ == "__main__":
    main()
