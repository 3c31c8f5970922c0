"""The worker's heartbeat into its Prefect work pool, so that operators see it in the dashboard
(its own liveness, which its peers judge, is `liveness.py`)."""

from __future__ import annotations

import logging
from typing import NoReturn

from prefect.client.orchestration import PrefectClient

from workflows.worker.periodic import every

logger = logging.getLogger(__name__)


async def serve(client: PrefectClient, work_pool: str, worker_name: str, seconds: float) -> NoReturn:
    async def beat() -> None:
        # (Prefect takes whole seconds)
        await client.send_worker_heartbeat(work_pool, worker_name, max(1, round(seconds)))

    await every(seconds, beat, failed="worker heartbeat failed", logger=logger, level=logging.WARNING)
