"""The Prefect orchestrator (`calculations.orchestrator.Orchestrator`), registered by `workflows/apps.py`: how a
committed run becomes a flow run, and what the API asks of Prefect (the workflow catalogue, a paused
run's form and its resume, a cancel, the health check).

A request thread only enqueues the run; one dispatcher thread per process creates the flow runs
(`flow_runs.py`). So a slow or unreachable Prefect never slows the API down: a run that could not
be dispatched stays QUEUED without a flow run, and the reconciler dispatches it later. The
idempotency key `<id>:<attempt>` makes a repeated dispatch return the existing flow run.

Every API process imports this module when Django starts, and Prefect is a heavy import (~2 s, and
its memory): so the modules that speak to Prefect are imported where they are first needed, in the
dispatcher thread or in the method that calls them, never here.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any
from uuid import UUID

from django.db import close_old_connections

from calculations.errors import Unavailable
from calculations.orchestrator import OrchestratorHealth, WorkflowInfo
from emgapiv2.config import get_settings

logger = logging.getLogger(__name__)

# (kind of run, as `calculations.run_kinds` names it; its id)
_queue: queue.Queue[tuple[str, UUID]] = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def dispatch(kind: str, run_id: UUID) -> None:
    """Queue a committed run (or its next attempt) for a flow run (non-blocking)."""
    global _thread
    if get_settings().prefect.dispatch == "off":
        return
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_dispatch_forever, name="calculation-dispatcher", daemon=True)
            _thread.start()
    _queue.put((kind, run_id))


def _dispatch_forever() -> None:
    # Prefect, imported by this thread when the process first launches a run (module docstring)
    from prefect.client.orchestration import get_client

    from workflows.orchestration.flow_runs import CREATE_FLOW_RUN

    while True:
        kind, run_id = _queue.get()
        try:
            with get_client(sync_client=True) as client:
                while True:
                    CREATE_FLOW_RUN[kind](client, run_id)
                    try:
                        kind, run_id = _queue.get(timeout=1)
                    except queue.Empty:
                        break
        except Exception:
            logger.exception("could not dispatch %s %s; the reconciler will retry", kind, run_id)
        finally:
            try:
                close_old_connections()
            except Exception:
                logger.debug("could not close the dispatcher's database connection", exc_info=True)


class PrefectOrchestrator:
    """Runs launched as Prefect flow runs (`calculations.orchestrator.Orchestrator`). Each method that
    speaks to Prefect imports its module when called (Prefect: a heavy import, see above); the
    tests' stand-ins replace those modules' functions."""

    name = "prefect"

    def launch(self, kind: str, run_id: UUID) -> None:
        dispatch(kind, run_id)

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        from workflows.orchestration import paused_runs  # Prefect: heavy, imported when first asked

        return paused_runs.paused_input_schema(flow_run_id)

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        from workflows.orchestration import paused_runs  # Prefect: heavy, imported when first asked

        paused_runs.resume_flow_run(flow_run_id, run_input)

    def workflows(self) -> list[WorkflowInfo]:
        from workflows.orchestration import catalogue  # Prefect: heavy, imported when first asked

        try:
            return catalogue.deployed_workflows()
        except Exception as exc:
            logger.warning("could not read the deployed workflows from Prefect", exc_info=True)
            raise Unavailable(f"the workflow catalogue (Prefect) does not answer: {type(exc).__name__}") from None

    def stop_run(self, flow_run_id: UUID) -> None:
        from workflows.orchestration import flow_runs  # Prefect: heavy, imported when first asked

        flow_runs.mark_flow_run_cancelling(flow_run_id)

    def health(self) -> OrchestratorHealth:
        from prefect.client.orchestration import get_client  # Prefect: heavy, imported when first asked

        with get_client(sync_client=True) as client:
            response = client.api_healthcheck()
        if response is not None:
            return OrchestratorHealth(ok=False, detail=str(response))
        return OrchestratorHealth(ok=True, detail=str(client.api_url))
