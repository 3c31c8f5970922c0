"""The workflow run a flow run serves, while its flow's code runs: set by whoever runs the flow run
(the calculation worker, or a Docker-pool container) before the flow starts, found by the SDK's
calls (`run_tool`, `pause_for_input`) from Prefect's flow-run context."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.context import FlowRunContext

from emgapiv2.config import get_settings


@dataclass
class WorkflowContext:
    """The workflow run a flow run serves."""

    workflow_run_id: UUID
    attempt: int
    flow_run_id: UUID
    steps: asyncio.Semaphore  # at most `workflow.max_parallel_steps` of its steps at once
    remote: bool = False  # in a Docker-pool container: steps are dispatched to the calculation worker
    error: str | None = None  # why the run failed, when Prefect's final state would not say (a pause timeout)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # the steps asked for and not yet created, each with its future, and the task creating them in
    # batches (`steps.create_step`)
    uncreated: list[Any] = field(default_factory=list)
    creator: asyncio.Task[None] | None = None

    def next_index(self, step: str) -> int:
        """The index of the next call of the step named `step` (its call order)."""
        index = self.counters[step]
        self.counters[step] += 1
        return index


_contexts: dict[UUID, WorkflowContext] = {}


def enter(workflow_run_id: UUID, attempt: int, flow_run_id: UUID, *, remote: bool = False) -> WorkflowContext:
    """Before the flow of the flow run starts (`leave` after it)."""
    steps = asyncio.Semaphore(get_settings().workflow.max_parallel_steps)
    context = WorkflowContext(workflow_run_id, attempt, flow_run_id, steps, remote)
    _contexts[flow_run_id] = context
    return context


def leave(flow_run_id: UUID) -> WorkflowContext | None:
    return _contexts.pop(flow_run_id, None)


def current() -> WorkflowContext:
    """The workflow run of the flow run whose code calls this; a RuntimeError saying how to run a
    workflow, outside one."""
    run_context = FlowRunContext.get()
    flow_run_id = run_context.flow_run.id if run_context is not None and run_context.flow_run else None
    if flow_run_id is None or flow_run_id not in _contexts:
        raise RuntimeError(
            "run_tool runs in a workflow's flow run, executed by the calculation worker: deploy the flow with "
            "`task deploy-flow FLOW=<name>` and launch it with POST /api/v2/workflows/<name>/runs"
        )
    return _contexts[flow_run_id]
