"""The seam between the calculations app and whatever executes calculations (design brief §3).

The actions decide *that* a calculation must be launched (after its transaction commits) or that
its run must be told to stop; a `Orchestrator` decides *how*. `workflows` registers the Prefect one
when Django starts (`workflows/apps.py`), so this app never imports Prefect or `workflows`, and
can be read, tested and reused without them. With no orchestrator registered, launches are no-ops:
rows stay QUEUED for the reconciler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from django.db import transaction

from calculations.errors import Unavailable
from calculations.models import Calculation, WorkflowRun
from calculations.run_kinds import kind_of

logger = logging.getLogger(__name__)


class OrchestratorHealth(NamedTuple):
    """Whether the orchestrator answers, and (for operators' logs) what it said."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class WorkflowInfo:
    """A deployed workflow users may launch: its name, description, and parameters' JSON schema."""

    name: str
    description: str
    parameters_schema: dict[str, Any]
    # the file its flow is defined in, on this host (an RO-Crate of a run holds it); None if unknown
    source_file: Path | None = None


class Orchestrator(Protocol):
    name: str  # the health check's key, e.g. "prefect"

    def launch(self, kind: str, run_id: UUID) -> None:
        """Start the current attempt of a run of `kind` (`calculations.run_kinds`: a calculation, a
        workflow run) as a flow run; called after commit, it must not block."""
        ...

    def stop_run(self, flow_run_id: UUID) -> None:
        """Tell the orchestrator a run is being canceled (best effort; the row is the truth)."""
        ...

    def workflows(self) -> list[WorkflowInfo]:
        """The workflows deployed for users to launch."""
        ...

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        """The JSON schema of the input a paused run waits for (Conflict if it is not paused)."""
        ...

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        """Resume a paused run with its input; InvalidInput says why the input was refused."""
        ...

    def health(self) -> OrchestratorHealth: ...


class NoOrchestrator:
    """Nothing executes calculations in this process: they wait QUEUED for the reconciler."""

    name = "orchestrator"

    def launch(self, kind: str, run_id: UUID) -> None:
        logger.debug("no orchestrator registered: %s %s waits for the reconciler", kind, run_id)

    def stop_run(self, flow_run_id: UUID) -> None:
        pass

    def workflows(self) -> list[WorkflowInfo]:
        return []

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        raise Unavailable("no orchestrator registered: nothing can be resumed")

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        raise Unavailable("no orchestrator registered: nothing can be resumed")

    def health(self) -> OrchestratorHealth:
        return OrchestratorHealth(ok=False, detail="no orchestrator registered (is 'workflows' in INSTALLED_APPS?)")


_orchestrator: Orchestrator = NoOrchestrator()


def register_orchestrator(orchestrator: Orchestrator) -> Orchestrator:
    """Install `orchestrator` for this process; return the previous one (tests restore it)."""
    global _orchestrator
    previous, _orchestrator = _orchestrator, orchestrator
    return previous


def get_orchestrator() -> Orchestrator:
    return _orchestrator


def launch_after_commit(run: Calculation | WorkflowRun) -> None:
    """Launch the run's current attempt once the transaction has committed (never a rolled-back row);
    the orchestrator is looked up then, so the one registered at that moment is used. A workflow's step
    is never launched on its own: its workflow's flow run executes it, and each retry of it."""
    if isinstance(run, Calculation) and run.workflow_run_id is not None:
        return
    kind, run_id = kind_of(run).name, run.id
    transaction.on_commit(lambda: get_orchestrator().launch(kind, run_id))


def stop_run_after_commit(flow_run_id: UUID) -> None:
    transaction.on_commit(lambda: get_orchestrator().stop_run(flow_run_id))
