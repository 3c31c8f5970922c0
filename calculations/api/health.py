from django.db import connection
from django.http import HttpRequest
from ninja import Router

from calculations.launching import get_launcher
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


def _check_launcher() -> tuple[str, HealthCheckOut]:
    launcher = get_launcher()
    try:
        health = launcher.health()
        return launcher.name, HealthCheckOut(ok=health.ok, detail=health.detail)
    except Exception as exc:
        return launcher.name, HealthCheckOut(ok=False, detail=str(exc))


@router.get("", response={200: HealthOut, 503: HealthOut}, auth=None, operation_id="health")
def health(request: HttpRequest) -> tuple[int, HealthOut]:
    """Whether the database, the storage and the orchestrator (Prefect) answer (no auth needed)."""
    launcher_name, launcher_check = _check_launcher()
    checks = {"database": _check_database(), "storage": _check_storage(), launcher_name: launcher_check}
    healthy = all(check.ok for check in checks.values())
    return (200 if healthy else 503), HealthOut(status="ok" if healthy else "degraded", checks=checks)
