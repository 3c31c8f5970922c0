"""The work pools the platform's flows run on: the calculation pool, of the calculation worker's own
type (its flow runs execute in the worker's event loop: `workflows/worker/`), and the Docker pool,
served by Prefect's own Docker worker (a container of the platform's image per flow run)."""

from __future__ import annotations

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

CALCULATION_POOL_TYPE = "emgapi-in-process"


async def ensure_calculation_work_pool(client: PrefectClient, name: str) -> None:
    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=CALCULATION_POOL_TYPE,
                description="Calculations, executed in-process by `task worker` (workflows/worker/).",
            )
        )
    except ObjectAlreadyExists:
        pass


async def ensure_docker_work_pool(client: PrefectClient, name: str) -> None:
    """The Docker work pool, with prefect-docker's job template (`task worker-docker` serves it)."""
    # prefect-docker: a heavy import (~1 s) that only the Docker pool needs, not the calculation worker
    from prefect_docker.worker import DockerWorker

    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=DockerWorker.type,
                base_job_template=DockerWorker.get_default_base_job_template(),
                description="Workflows that may block (sync flows): a container of the platform's image per run.",
            )
        )
    except ObjectAlreadyExists:
        pass
