"""Prefect's own Kubernetes worker (prefect-kubernetes) on the platform's Kubernetes work pool, in the
cluster (`deployment/kubernetes/`: the flow-worker Deployment runs `python -m workflows.kubernetes_worker`).

It runs each flow run of a workflow deployed with `task deploy-flow FLOW=<name> POOL=kubernetes` as a
Job of the platform's image (`container_runner.py` is its command), with the pool's job template
(`work_pools.kubernetes_base_job_template`). The pool is created first, if no deployment created it yet.
"""

from __future__ import annotations

import asyncio
import os
import sys

import django

from emgapiv2.config import get_settings


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    # imported once Django is set up: Prefect reads the PREFECT_API_URL that the settings give
    from prefect.client.orchestration import get_client

    from workflows.orchestration.work_pools import ensure_kubernetes_work_pool

    pool = get_settings().prefect.kubernetes_work_pool

    async def create_pool() -> None:
        async with get_client() as client:
            await ensure_kubernetes_work_pool(client, pool)

    asyncio.run(create_pool())
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "kubernetes"]
    os.execv(sys.executable, argv + sys.argv[1:])


if __name__ == "__main__":
    main()
