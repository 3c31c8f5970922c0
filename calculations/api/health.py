from django.db import connection
from django.http import HttpRequest
from ninja import Router

from calculations.schemas import HealthCheckOut, HealthOut
from calculations.storage import get_storage

router = Router(tags=["health"])


def _check_database() -> HealthCheckOut:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return HealthCheckOut(ok=True, detail=connection.vendor)
    except Exception as exc:
        return HealthCheckOut(ok=False, detail=str(exc))


def _check_storage() -> HealthCheckOut:
    storage = get_storage()
    try:
        storage.check()
        return HealthCheckOut(ok=True, detail=storage.kind)
    except Exception as exc:
        return HealthCheckOut(ok=False, detail=str(exc))


def _check_prefect() -> HealthCheckOut:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            response = client.api_healthcheck()
        if response is not None:
            return HealthCheckOut(ok=False, detail=str(response))
        return HealthCheckOut(ok=True, detail=str(client.api_url))
    except Exception as exc:
        return HealthCheckOut(ok=False, detail=str(exc))


@router.get("", response={200: HealthOut, 503: HealthOut}, auth=None, operation_id="health")
def health(request: HttpRequest) -> tuple[int, HealthOut]:
    """Whether the database, the storage and the Prefect server answer (no auth needed)."""
    checks = {"database": _check_database(), "storage": _check_storage(), "prefect": _check_prefect()}
    healthy = all(check.ok for check in checks.values())
    return (200 if healthy else 503), HealthOut(status="ok" if healthy else "degraded", checks=checks)
