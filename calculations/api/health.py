"""`GET /api/v2/health`, for probes: open to anyone, so it says which dependency fails and never how
(an error's text can name hosts, accounts or paths): that goes to the API's log. The probes:
`GET /api/v2/health/ready` (readiness) asks only what the API cannot serve without, the database and
the storage: with Prefect down it still serves and queues submissions (the reconciler dispatches them
later), so a Prefect restart must not take every API pod out of the load balancer; `GET
/api/v2/health/live` (liveness) asks nothing, so that an outage of the database takes the pods out of
the load balancer without restarting them all."""

import logging

from django.db import connection
from django.http import HttpRequest
from ninja import Router

from calculations.orchestrator import get_orchestrator
from calculations.schemas import HealthCheckOut, HealthOut
from calculations.storage import get_storage

router = Router(tags=["health"])
logger = logging.getLogger(__name__)


def _failed(what: str, exc: Exception) -> HealthCheckOut:
    logger.warning("health check: %s failed", what, exc_info=exc)
    return HealthCheckOut(ok=False, detail=f"does not answer ({type(exc).__name__}); the API's log says why")


def _check_database() -> HealthCheckOut:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return HealthCheckOut(ok=True, detail=connection.vendor)
    except Exception as exc:
        return _failed("the database", exc)


def _check_storage() -> HealthCheckOut:
    storage = get_storage()
    try:
        storage.check()
        return HealthCheckOut(ok=True, detail=storage.kind)
    except Exception as exc:
        return _failed("the storage", exc)


def _check_orchestrator() -> tuple[str, HealthCheckOut]:
    orchestrator = get_orchestrator()
    try:
        health = orchestrator.health()
    except Exception as exc:
        return orchestrator.name, _failed(orchestrator.name, exc)
    if not health.ok:
        logger.warning("health check: %s: %s", orchestrator.name, health.detail)
    return orchestrator.name, HealthCheckOut(ok=health.ok, detail="answers" if health.ok else "does not answer")


@router.get("", response={200: HealthOut, 503: HealthOut}, auth=None, operation_id="health")
def health(request: HttpRequest) -> tuple[int, HealthOut]:
    """Whether the database, the storage and the orchestrator (Prefect) answer (no auth needed)."""
    orchestrator_name, orchestrator_check = _check_orchestrator()
    checks = {"database": _check_database(), "storage": _check_storage(), orchestrator_name: orchestrator_check}
    healthy = all(check.ok for check in checks.values())
    return (200 if healthy else 503), HealthOut(status="ok" if healthy else "degraded", checks=checks)


@router.get("/ready", response={200: HealthOut, 503: HealthOut}, auth=None, operation_id="health_ready")
def ready(request: HttpRequest) -> tuple[int, HealthOut]:
    """Whether the API can serve: its database and storage answer (Prefect is not asked; no auth needed)."""
    checks = {"database": _check_database(), "storage": _check_storage()}
    healthy = all(check.ok for check in checks.values())
    return (200 if healthy else 503), HealthOut(status="ok" if healthy else "degraded", checks=checks)


@router.get("/live", response={200: HealthOut}, auth=None, operation_id="health_live")
def live(request: HttpRequest) -> HealthOut:
    """Whether this process answers at all (no dependency is asked; no auth needed)."""
    return HealthOut(status="ok", checks={})
