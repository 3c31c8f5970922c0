"""What a flow author writes workflows with (design brief §10; `workflows/README.md` shows how). Only
the names in `__all__` are the SDK; how a step runs is the engine's (`workflows/execution/`).

    from prefect import flow
    from workflows.sdk import FileId, run_tool

    @flow(name="annotate-genome")
    async def annotate_genome(contigs: FileId, profile: FileId) -> None:
        genes = await run_tool("prodigal", inputs={"contigs": contigs})
        await run_tool("hmmsearch", inputs={"profile": profile, "sequences": genes.outputs["proteins"]})

`run_tool` creates a step, a Calculation that belongs to the workflow run (its step name and index),
through the actions layer, and executes it as a Prefect task run named `<step>: <tool>` in the
current flow run: the same path as any calculation (backends, cache, fencing, heartbeats, logs,
provenance). It returns the step's outputs; a step that did not complete raises `StepFailed`, which
names the step, its calculation and the tool's message. Steps awaited together (asyncio.gather) run
concurrently, at most `workflow.max_parallel_steps` per run, as many as the owner's active-calculations
quota leaves (a step beyond it waits), and `workflow.local_step_slots` local ones per worker, shared
between users in turn (`execution/step_slots.py`). A resumed workflow run (after its worker was lost)
finds each step by its name and index: a COMPLETE one is not executed again.

A flow on the Docker work pool runs in a container of its own (`container_runner.py`); there
`run_tool` (or `run_tool_sync`, in a sync flow) dispatches each step to the calculation worker as a
calculation of its own and waits for it: no tool runs in the flow's container.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

from pydantic import Field, WithJsonSchema

from calculations import actions
from calculations.models import File
from calculations.storage import get_storage
from calculations.workflow_params import FILE_MARK
from workflows.db import db
from workflows.execution import pauses
from workflows.execution.pauses import CanceledWhilePaused, PauseTimedOut
from workflows.execution.steps import StepCall, StepFailed, StepResult, run_step
from workflows.execution.workflow_context import current

__all__ = [
    "MAX_FILES",
    "CanceledWhilePaused",
    "FileId",
    "FileIds",
    "PauseTimedOut",
    "StepFailed",
    "StepResult",
    "cancel_running_steps",
    "pause_for_input",
    "read_text",
    "run_tool",
    "run_tool_sync",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

# A parameter that names one of the submitter's files: the API checks it is theirs before the run starts.
FileId = Annotated[UUID, WithJsonSchema({"type": "string", "format": "uuid", FILE_MARK: True})]
MAX_FILES = 1000
# A list of them, bounded: a run's steps are paced by its owner's quota, but its list is its flow's memory
# and the API's check of each file (a 422 past MAX_FILES).
FileIds = Annotated[list[FileId], Field(max_length=MAX_FILES)]


async def run_tool(
    tool: str,
    inputs: Mapping[str, UUID | str],
    params: Mapping[str, Any] | None = None,
    backend: str | None = None,
    *,
    step: str | None = None,
    index: int | None = None,
    use_cache: bool = True,
    resources: Mapping[str, int | None] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> StepResult:
    """Run `tool` as a step of the current workflow run; return its outputs, or raise StepFailed.

    `step` names it (default: the tool's name); `index` tells apart calls of one name (default: their
    order in this run, so keep that order deterministic, as asyncio.gather over a list does).
    `resources` ({cpus, memory_mb, time_limit_seconds, gpus}, each optional) asks for more or less than
    the tool's own values, within its and the deployment's limits (else StepFailed saying which);
    `retry` ({on_oom, on_time_limit, max_memory_mb, max_time_limit_seconds}) whether an attempt killed for
    its memory or time is retried with more, and up to what."""
    context = current()
    name = step or tool
    if index is None:
        index = context.next_index(name)
    async with context.steps:
        return await run_step(
            context, StepCall(name, index, tool, inputs, params, backend, use_cache, resources, retry)
        )


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """A sync wrapper of an SDK coroutine, for a sync flow on the Docker work pool (the in-process
    pool takes async flows only): it blocks until the coroutine has ended."""
    name = function.__name__

    @functools.wraps(function)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        if not current().remote:
            raise RuntimeError(f"{name}_sync is for sync flows on the Docker work pool; in an async flow, await {name}")
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop runs here: a sync flow's
            return asyncio.run(function(*args, **kwargs))
        raise RuntimeError(f"{name}_sync blocks its caller: in an async flow, await {name}")

    blocking.__name__ = blocking.__qualname__ = f"{name}_sync"
    blocking.__doc__ = f"`{name}` for a sync flow on the Docker work pool: it blocks until the step has ended."
    return blocking


run_tool_sync = _blocking(run_tool)


async def cancel_running_steps(reason: str) -> int:
    """Cancel every step of the current workflow run still in flight (a flow that stops early)."""
    return int(await db(actions.do_cancel_steps)(current().workflow_run_id, reason=reason))


async def pause_for_input(model: type[T], description: str = "", *, timeout_seconds: int | None = None) -> T:
    """Wait for an operator's input: the workflow run is PAUSED, the dashboard shows Prefect's form for
    `model` under `description` (markdown), and a resume there, or POST /api/v2/workflow-runs/{id}/resume
    {"input": {...}}, continues the run with the validated input, which this returns. No one in
    `timeout_seconds` (default `workflow.pause_timeout_seconds`): the run fails, saying so
    (PauseTimedOut). A run canceled meanwhile ends CANCELED (CanceledWhilePaused)."""
    return await pauses.pause_for_input(model, description, timeout_seconds=timeout_seconds)


def _read_text(file_id: UUID, max_bytes: int) -> str:
    sha256 = File.objects.values_list("sha256", flat=True).get(id=file_id)
    data = b""
    for chunk in get_storage().iter_chunks(sha256):
        data += chunk
        if len(data) >= max_bytes:
            break
    return data[:max_bytes].decode(errors="replace")


async def read_text(file_id: UUID, max_bytes: int = 16 * 1024 * 1024) -> str:
    """A (step's output) file's first `max_bytes` as text: for a flow that summarises what it found."""
    return str(await db(_read_text)(file_id, max_bytes))
