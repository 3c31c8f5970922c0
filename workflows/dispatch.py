"""Triggering Prefect flow runs for calculations, after their transaction has committed.

A request thread only enqueues the calculation id; one dispatcher thread per process creates the
flow runs. So a slow or unreachable Prefect never slows the API down: a calculation that could
not be dispatched stays QUEUED without a flow run, and the reconciler dispatches it later.
The idempotency key `<id>:<attempt>` makes a repeated dispatch return the existing flow run.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING
from uuid import UUID

from django.utils import timezone

from calculations.launching import LauncherHealth
from emgapiv2.config import get_settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

logger = logging.getLogger(__name__)

_queue: queue.Queue[UUID] = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_deployment_ids: dict[str, UUID] = {}


def flow_run_name(calculation_id: UUID) -> str:
    """Operators find a calculation's flow run in the Prefect UI by this name."""
    return f"calc-{calculation_id}"


def dispatch_calculation(calculation_id: UUID) -> None:
    """Queue a committed calculation for a flow run (non-blocking)."""
    if get_settings().prefect.dispatch == "off":
        return
    _ensure_thread()
    _queue.put(calculation_id)


def _ensure_thread() -> None:
    global _thread
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_dispatch_forever, name="calculation-dispatcher", daemon=True)
            _thread.start()


def _deployment_id(client: SyncPrefectClient) -> UUID:
    name = get_settings().prefect.deployment
    if name not in _deployment_ids:
        _deployment_ids[name] = client.read_deployment_by_name(name).id
    return _deployment_ids[name]


def create_flow_run(client: SyncPrefectClient, calculation_id: UUID) -> UUID | None:
    """Create (idempotently) the flow run of the calculation's current attempt and record it."""
    from prefect.states import Scheduled

    from calculations.actions import do_record_flow_run
    from calculations.models import Calculation
    from calculations.states import CalculationState

    row = Calculation.objects.filter(id=calculation_id).values("attempt", "state", "flow_run_id", "not_before").first()
    if row is None or row["state"] != CalculationState.QUEUED or row["flow_run_id"] is not None:
        return None
    # a retry waits out its backoff as a flow run scheduled for later, visible in the Prefect UI
    not_before = row["not_before"]
    flow_run = client.create_flow_run_from_deployment(
        _deployment_id(client),
        parameters={"calculation_id": str(calculation_id)},
        idempotency_key=f"{calculation_id}:{row['attempt']}",
        name=flow_run_name(calculation_id),
        state=Scheduled(scheduled_time=not_before) if not_before and not_before > timezone.now() else None,
    )
    do_record_flow_run(calculation_id, row["attempt"], flow_run.id)
    return flow_run.id


def _dispatch_forever() -> None:
    from django.db import close_old_connections
    from prefect.client.orchestration import get_client

    while True:
        calculation_id = _queue.get()
        try:
            with get_client(sync_client=True) as client:
                while True:
                    create_flow_run(client, calculation_id)
                    try:
                        calculation_id = _queue.get(timeout=1)
                    except queue.Empty:
                        break
        except Exception:
            logger.exception("could not dispatch calculation %s; the reconciler will retry", calculation_id)
        finally:
            try:
                close_old_connections()
            except Exception:
                logger.debug("could not close the dispatcher's database connection", exc_info=True)


def cancel_flow_run(flow_run_id: UUID) -> None:
    """Mark a flow run cancelled in Prefect so operators see it; best-effort.

    The calculation's own state (CANCELING) is what the worker acts on, so a failure here
    changes nothing for the user.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is None or flow_run.state.is_final():
                return
            # a run not yet picked up is simply cancelled; a running one is asked to stop
            target: State = Cancelling() if flow_run.state.is_running() else Cancelled()
            client.set_flow_run_state(flow_run_id, target, force=True)
    except Exception:
        logger.warning("could not mark flow run %s cancelled in Prefect", flow_run_id, exc_info=True)


def prefect_health() -> LauncherHealth:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.api_healthcheck()
    if response is not None:
        return LauncherHealth(ok=False, detail=str(response))
    return LauncherHealth(ok=True, detail=str(client.api_url))


class PrefectLauncher:
    """Calculations launched as Prefect flow runs (`calculations.launching.Launcher`)."""

    name = "prefect"

    def launch(self, calculation_id: UUID) -> None:
        dispatch_calculation(calculation_id)

    def stop_run(self, flow_run_id: UUID) -> None:
        cancel_flow_run(flow_run_id)

    def health(self) -> LauncherHealth:
        return prefect_health()
