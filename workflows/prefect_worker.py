"""Prefect's own workers on the platform's work pools: prefect-docker (`docker_worker.py`) and
prefect-kubernetes (`kubernetes_worker.py`). The pool is created first, with its job template, if no
deployment created it yet; then `prefect worker start` takes this process's place."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Literal

import django

from emgapiv2.config import get_settings


def serve(pool_type: Literal["docker", "kubernetes"]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    # imported once Django is set up: Prefect reads the PREFECT_API_URL that the settings give
    from prefect.client.orchestration import get_client

    from workflows.orchestration import work_pools

    settings = get_settings().prefect
    if pool_type == "docker":
        pool, ensure = settings.docker_work_pool, work_pools.ensure_docker_work_pool
    else:
        pool, ensure = settings.kubernetes_work_pool, work_pools.ensure_kubernetes_work_pool

    async def create_pool() -> None:
        async with get_client() as client:
            await ensure(client, pool)

    asyncio.run(create_pool())
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", pool_type]
    os.execv(sys.executable, argv + sys.argv[1:])
