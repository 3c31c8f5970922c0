"""The kinds of run (design brief §11): a calculation and a workflow run are each a run with an
owner, a state machine, attempts, an event log and a flow run. What differs between them is only
this: the row's model, its event model, its transition table and what it is called in messages.

The actions that every kind shares (a guarded transition with its event row, a cancel request,
recording the flow run that serves an attempt, launching after commit) take a kind, or find it from
the row, and are written once (`calculations/actions/transitions.py`, `cancels.py`). A TES task is a
calculation: it differs in how an attempt runs, not in its lifecycle (`calculations/programs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from calculations.models import Calculation, CalculationEvent, WorkflowRun, WorkflowRunEvent
from calculations.states import CALCULATION_TRANSITIONS, WORKFLOW_RUN_TRANSITIONS, RunState

Run = TypeVar("Run", Calculation, WorkflowRun)


@dataclass(frozen=True)
class RunKind(Generic[Run]):
    name: str  # the orchestrator's key, and what messages call it ("calculation", "workflow run")
    model: type[Run]
    event_model: type[CalculationEvent] | type[WorkflowRunEvent]
    event_field: str  # the event model's foreign key to the run
    transitions: dict[RunState, frozenset[RunState]]

    @property
    def states(self) -> frozenset[RunState]:
        """Every state a run of this kind can be in (a calculation is never PAUSED)."""
        return frozenset(self.transitions).union(*self.transitions.values())

    def sources_of(self, target: RunState) -> frozenset[RunState]:
        """States from which `target` may be entered."""
        return frozenset(source for source, targets in self.transitions.items() if target in targets)


CALCULATION: RunKind[Calculation] = RunKind(
    "calculation", Calculation, CalculationEvent, "calculation", CALCULATION_TRANSITIONS
)
WORKFLOW_RUN: RunKind[WorkflowRun] = RunKind(
    "workflow run", WorkflowRun, WorkflowRunEvent, "workflow_run", WORKFLOW_RUN_TRANSITIONS
)
_BY_MODEL: dict[type[Any], RunKind[Any]] = {kind.model: kind for kind in (CALCULATION, WORKFLOW_RUN)}
BY_NAME: dict[str, RunKind[Any]] = {kind.name: kind for kind in (CALCULATION, WORKFLOW_RUN)}


def kind_of(run: Calculation | WorkflowRun) -> RunKind[Any]:
    return _BY_MODEL[type(run)]
