"""What a flow author writes workflows with (design brief §10; `workflows/README.md` shows how).

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
between users in turn (`step_slots.py`). A resumed workflow run (after its worker was lost) finds each
step by its name and index: a COMPLETE one is not executed again.

A flow on the Docker work pool runs in a container of its own (`container_runner.py`); there
`run_tool` (or `run_tool_sync`, in a sync flow) dispatches each step to the calculation worker as a
calculation of its own and waits for it: no tool runs in the flow's container.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar, cast
from uuid import UUID

from django.utils import timezone
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from pydantic import Field, WithJsonSchema

from calculations import actions
from calculations.errors import InvalidInput, InvalidTransition, NotFound
from calculations.models import Calculation, File
from calculations.states import TERMINAL_STATES, CalculationState
from calculations.workflow_params import FILE_MARK
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.execution import CalculationRun

S = CalculationState
T = TypeVar("T")
logger = logging.getLogger(__name__)

# A parameter that names one of the submitter's files: the API checks it is theirs before the run starts.
FileId = Annotated[UUID, WithJsonSchema({"type": "string", "format": "uuid", FILE_MARK: True})]
MAX_FILES = 1000
# A list of them, bounded: a run's steps are paced by its owner's quota, but its list is its flow's memory
# and the API's check of each file (a 422 past MAX_FILES).
FileIds = Annotated[list[FileId], Field(max_length=MAX_FILES)]


class StepFailed(Exception):
    """A step did not complete: its name, index, calculation, tool, state and error. `mapped`: one
    element of several (its index is named even when it is 0)."""

    def __init__(
        self,
        step: str,
        index: int,
        tool: str,
        state: str,
        error: str,
        calculation_id: UUID | None,
        *,
        mapped: bool = False,
    ) -> None:
        self.step, self.index, self.tool, self.state = step, index, tool, state
        self.error, self.calculation_id = error, calculation_id
        where = f"step {step!r}" + (f" [{index}]" if index or mapped else "")
        of = f" (calculation {calculation_id}, {tool})" if calculation_id else f" ({tool})"
        super().__init__(f"{where}{of} {state}: {error.strip()[:3000] or '(no message)'}")

    def as_element(self) -> StepFailed:
        """The same failure, of an element of a map: named by its index, the first one's too."""
        return StepFailed(self.step, self.index, self.tool, self.state, self.error, self.calculation_id, mapped=True)


@dataclass(frozen=True)
class StepResult:
    step: str
    index: int
    tool: str
    calculation_id: UUID
    state: str
    cached: bool  # answered from (or following) an identical calculation
    files: dict[str, list[UUID]]  # every output file, by role

    @property
    def outputs(self) -> dict[str, UUID]:
        """The output file of each role (the first, for a role with several files)."""
        return {role: ids[0] for role, ids in self.files.items() if ids}


@dataclass
class WorkflowContext:
    """The workflow run a flow run serves (set by the worker that runs it)."""

    workflow_run_id: UUID
    attempt: int
    flow_run_id: UUID
    steps: asyncio.Semaphore
    remote: bool = False  # in a Docker-pool container: steps are dispatched to the calculation worker
    error: str | None = None  # why the run failed, when Prefect's final state would not say (a pause timeout)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def next_index(self, step: str) -> int:
        index = self.counters[step]
        self.counters[step] += 1
        return index


_contexts: dict[UUID, WorkflowContext] = {}


def begin(workflow_run_id: UUID, attempt: int, flow_run_id: UUID, *, remote: bool = False) -> WorkflowContext:
    """The worker (or a Docker-pool container) calls this before running a workflow run's flow
    run, and `end` after it."""
    context = WorkflowContext(
        workflow_run_id, attempt, flow_run_id, asyncio.Semaphore(get_settings().workflow.max_parallel_steps), remote
    )
    _contexts[flow_run_id] = context
    return context


def end(flow_run_id: UUID) -> WorkflowContext | None:
    return _contexts.pop(flow_run_id, None)


def current() -> WorkflowContext:
    run_context = FlowRunContext.get()
    flow_run_id = run_context.flow_run.id if run_context is not None and run_context.flow_run else None
    if flow_run_id is None or flow_run_id not in _contexts:
        raise RuntimeError(
            "run_tool runs in a workflow's flow run, executed by the calculation worker: deploy the flow with "
            "`task deploy-flow FLOW=<name>` and launch it with POST /api/v2/workflows/<name>/runs"
        )
    return _contexts[flow_run_id]


@dataclass(frozen=True)
class _Row:
    state: str
    attempt: int
    following: bool
    not_before: datetime | None
    dispatched: bool  # has a flow run of its own (a Docker-pool workflow's step)

    @classmethod
    def of(cls, calc: Calculation) -> _Row:
        following = calc.cached_from_id is not None
        return cls(calc.state, calc.attempt, following, calc.not_before, calc.flow_run_id is not None)


def _row(calculation_id: UUID) -> _Row:
    fields = ("state", "attempt", "cached_from", "not_before", "flow_run_id")
    return _Row.of(Calculation.objects.only(*fields).get(id=calculation_id))


async def drive_step(calculation_id: UUID, run_logger: Any, flow_run_id: UUID, row: _Row | None = None) -> str:
    """Execute the step's calculation until it has ended: each attempt in turn (after its backoff), or
    watching the identical calculation it follows; return its final state. (`row`: the calculation
    as its creation left it, which saves a query per step.)"""
    poll = get_settings().worker.cancel_check_seconds
    while True:
        if row is None:
            row = await db(_row)(calculation_id)
        if row.state in TERMINAL_STATES:
            return row.state
        if row.state != S.QUEUED or row.following:
            await asyncio.sleep(poll)  # following an identical calculation, or an attempt ending elsewhere
            row = None
            continue
        if row.not_before is not None and (wait := (row.not_before - timezone.now()).total_seconds()) > 0:
            await asyncio.sleep(wait)
        try:  # (it waits for its owner's quota and a local slot: step_slots.py)
            state = await CalculationRun(calculation_id, run_logger).execute(flow_run_id=flow_run_id)
        except Exception:
            after: _Row = await db(_row)(calculation_id)
            if (after.state, after.attempt) == (row.state, row.attempt):
                raise  # nothing was recorded: running it again would fail the same way
            run_logger.exception("step calculation %s: platform error (recorded)", calculation_id)
            state = None
        if state in TERMINAL_STATES:
            return str(state)
        row = None


@task(name="step", task_run_name="{label}", persist_result=False, cache_policy=NO_CACHE, log_prints=False)
async def execute_step(calculation_id: UUID, label: str, flow_run_id: UUID, row: _Row | None = None) -> str:
    """One step, as a task run of the workflow's flow run (seen in the dashboard under `label`)."""
    return await drive_step(calculation_id, get_run_logger(), flow_run_id, row)


def dispatch_step(calculation_id: UUID) -> None:
    """A Docker-pool workflow's step (and each retry of it) runs on the calculation worker as a
    run-calculation flow run of its own, created here (idempotently: one per attempt)."""
    from prefect.client.orchestration import get_client

    from workflows.orchestration.flow_runs import create_calculation_flow_run

    with get_client(sync_client=True) as client:
        create_calculation_flow_run(client, calculation_id)


def _needs_dispatch(row: _Row) -> bool:
    return row.state == S.QUEUED and not row.following and not row.dispatched


async def await_remote_step(calculation_id: UUID) -> str:
    """Dispatch the step to the calculation worker (again after a retry) until it has ended."""
    poll = get_settings().worker.cancel_check_seconds
    while True:
        row: _Row = await db(_row)(calculation_id)
        if row.state in TERMINAL_STATES:
            return row.state
        if _needs_dispatch(row):
            await db(dispatch_step)(calculation_id)
        await asyncio.sleep(poll)


@task(name="step", task_run_name="{label}", persist_result=False, cache_policy=NO_CACHE, log_prints=False)
async def await_remote_step_task(calculation_id: UUID, label: str) -> str:
    return await await_remote_step(calculation_id)


@task(name="step", task_run_name="{label}", persist_result=False, cache_policy=NO_CACHE, log_prints=False)
def await_remote_step_sync(calculation_id: UUID, label: str) -> str:
    """The same, for a sync flow: it blocks, which its own container allows."""
    poll = get_settings().worker.cancel_check_seconds
    while True:
        row = _row(calculation_id)
        if row.state in TERMINAL_STATES:
            return row.state
        if _needs_dispatch(row):
            dispatch_step(calculation_id)
        time.sleep(poll)


def _result(calculation_id: UUID) -> tuple[StepResult, str]:
    calc = Calculation.objects.get(id=calculation_id)
    files: dict[str, list[UUID]] = {}
    for role, file_id in (
        File.objects.filter(produced_by_id=calculation_id)
        .order_by("output_role", "name")
        .values_list("output_role", "id")
    ):
        files.setdefault(role, []).append(file_id)
    result = StepResult(
        step=calc.step,
        index=calc.step_index or 0,
        tool=calc.tool,
        calculation_id=calc.id,
        state=calc.state,
        cached=calc.cached_from_id is not None,
        files=files,
    )
    return result, calc.error or _why_canceled(calc)


def _why_canceled(calc: Calculation) -> str:
    """Who stopped a CANCELED step (a user's cancel of the step, or its run stopping after a failure)."""
    if calc.state != S.CANCELED:
        return ""
    asked = calc.events.filter(to_state=S.CANCELING).order_by("-created_at").first()
    return f"canceled (cancel requested by {asked.actor})" if asked else "canceled"


def _create_step(
    context: WorkflowContext,
    name: str,
    index: int,
    tool: str,
    inputs: Mapping[str, UUID | str],
    params: Mapping[str, Any] | None,
    backend: str | None,
    use_cache: bool,
) -> Calculation:
    """The step's calculation (created, or found from an earlier attempt); StepFailed if refused."""
    try:
        file_ids = {role: UUID(str(value)) for role, value in inputs.items()}
        return actions.do_create_step(
            context.workflow_run_id, context.attempt, step=name, index=index, tool=tool,
            inputs=file_ids, params=dict(params or {}), backend=backend, use_cache=use_cache,
        )  # fmt: skip
    except (InvalidInput, NotFound, ValueError, InvalidTransition) as exc:
        raise StepFailed(name, index, tool, "not started", str(exc), None) from None


async def run_tool(
    tool: str,
    inputs: Mapping[str, UUID | str],
    params: Mapping[str, Any] | None = None,
    backend: str | None = None,
    *,
    step: str | None = None,
    index: int | None = None,
    use_cache: bool = True,
) -> StepResult:
    """Run `tool` as a step of the current workflow run; return its outputs, or raise StepFailed.

    `step` names it (default: the tool's name); `index` tells apart calls of one name (default: their
    order in this run, so keep that order deterministic, as asyncio.gather over a list does)."""
    context = current()
    name = step or tool
    if index is None:
        index = context.next_index(name)
    async with context.steps:
        calc: Calculation = await db(_create_step)(context, name, index, tool, inputs, params, backend, use_cache)
        if calc.state not in TERMINAL_STATES:
            label = f"{name}: {tool}" + (f" [{index}]" if index else "")
            if context.remote:
                await await_remote_step_task(calc.id, label)
            else:
                await execute_step(calc.id, label, context.flow_run_id, _Row.of(calc))
    found: tuple[StepResult, str] = await db(_result)(calc.id)
    result, error = found
    if result.state != S.COMPLETE:
        raise StepFailed(name, index, tool, result.state, error, calc.id)
    return result


def run_tool_sync(
    tool: str,
    inputs: Mapping[str, UUID | str],
    params: Mapping[str, Any] | None = None,
    backend: str | None = None,
    *,
    step: str | None = None,
    index: int | None = None,
    use_cache: bool = True,
) -> StepResult:
    """`run_tool` for a sync flow on the Docker work pool: the step runs on the calculation worker,
    and this blocks until it has ended (the in-process pool takes async flows only)."""
    context = current()
    if not context.remote:
        raise RuntimeError("run_tool_sync is for sync flows on the Docker work pool; in an async flow, await run_tool")
    name = step or tool
    if index is None:
        index = context.next_index(name)
    calc = _create_step(context, name, index, tool, inputs, params, backend, use_cache)
    if calc.state not in TERMINAL_STATES:
        await_remote_step_sync(calc.id, f"{name}: {tool}" + (f" [{index}]" if index else ""))
    result, error = _result(calc.id)
    if result.state != S.COMPLETE:
        raise StepFailed(name, index, tool, result.state, error, calc.id)
    return result


async def cancel_running_steps(reason: str) -> int:
    """Cancel every step of the current workflow run still in flight (a flow that stops early)."""
    context = current()
    return int(await db(actions.do_cancel_steps)(context.workflow_run_id, reason=reason))


class PauseTimedOut(Exception):
    """No one gave the paused run its input in time."""


class CanceledWhilePaused(Exception):
    """The run was canceled while it waited for its input."""


def _canceling(workflow_run_id: UUID) -> bool:
    from calculations.models import WorkflowRun

    state = WorkflowRun.objects.filter(id=workflow_run_id).values_list("state", flat=True).first()
    return state in (S.CANCELING, S.CANCELED, None)


async def _until_paused_in_prefect(flow_run_id: UUID, pause: asyncio.Future[Any]) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        while not pause.done():
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_paused():
                return
            await asyncio.sleep(0.2)


async def pause_for_input(model: type[T], description: str = "", *, timeout_seconds: int | None = None) -> T:
    """Wait for an operator's input: the workflow run is PAUSED, the dashboard shows Prefect's form for
    `model` under `description` (markdown), and a resume there, or POST /api/v2/workflow-runs/{id}/resume
    {"input": {...}}, continues the run with the validated input, which this returns. No one in
    `timeout_seconds` (default `workflow.pause_timeout_seconds`): the run fails, saying so. A paused
    run costs its worker a coroutine that asks Prefect every `workflow.pause_poll_seconds`."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import apause_flow_run
    from prefect.input.run_input import run_input_subclass_from_type

    context = current()
    settings = get_settings().workflow
    timeout = timeout_seconds or settings.pause_timeout_seconds
    wanted: Any = run_input_subclass_from_type(model)
    if description:
        wanted = wanted.with_initial_data(description=description)
    pause = asyncio.ensure_future(
        apause_flow_run(wait_for_input=wanted, timeout=timeout, poll_interval=settings.pause_poll_seconds)
    )
    try:
        # PAUSED here only once Prefect's flow run is Paused: a resume the row allows must find it so
        await _until_paused_in_prefect(context.flow_run_id, pause)
        await db(actions.do_pause_workflow_run)(context.workflow_run_id, context.attempt, description=description)
        while not pause.done():
            await asyncio.wait({pause}, timeout=settings.pause_poll_seconds)
            if not pause.done() and await db(_canceling)(context.workflow_run_id):
                raise CanceledWhilePaused(
                    f"workflow run {context.workflow_run_id} was canceled while waiting for input"
                )
        value = pause.result()
    except FlowPauseTimeout:
        first = (description.strip().splitlines() or ["its input"])[0][:200]
        # (Prefect fails the flow run itself when the pause expires, with a message of its own)
        context.error = f"paused for input ({first}) and not resumed within {timeout} s"
        raise PauseTimedOut(context.error) from None
    finally:
        pause.cancel()
    await db(actions.do_unpause_workflow_run)(context.workflow_run_id, context.attempt)
    return cast(T, value)


def _read_text(file_id: UUID, max_bytes: int) -> str:
    from calculations.storage import get_storage

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
