"""A workflow's step, on the engine's side of `run_tool` (`workflows/sdk.py`): a Calculation that
belongs to the workflow run (its step name and index), created through the actions (or found again
from an earlier attempt of the run), then executed as a Prefect task run named `<step>: <tool>` in the
flow run, through the same path as any calculation (`calculation_runs.py`): each attempt in turn,
after its backoff, or watching the identical calculation it follows. In a Docker-pool container
(`WorkflowContext.remote`) each attempt is dispatched instead to the calculation worker, as a
run-calculation flow run of its own, and awaited: no tool runs in the flow's container.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.logging.handlers import APILogHandler
from prefect.logging.loggers import PrefectLogAdapter

from calculations import actions
from calculations.admin_links import admin_url
from calculations.errors import InvalidInput, NotFound
from calculations.models import Calculation, File
from calculations.provenance import Provenance
from calculations.run_kinds import CALCULATION
from calculations.states import TERMINAL_STATES, RunState
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.execution.calculation_runs import CalculationRun
from workflows.execution.workflow_context import WorkflowContext
from workflows.orchestration.orchestrator import create_flow_run

S = RunState

# One INFO line per step, at its end, in its task run's logs (state, argv, the calculation's admin
# page), at its own level, while the rest of a step's lines stay at workflow.step_log_level (WARNING:
# a map of thousands of steps pays for every line in server CPU, bench/README.md). It goes to the
# dashboard only: Prefect's console handler (rich) took 3 ms of the worker's CPU per line, a twentieth
# of a map step's, to repeat in the worker's own log what the task run's page shows.
STEP_LOGGER = logging.getLogger("prefect.task_runs.steps")
STEP_LOGGER.setLevel(logging.INFO)
STEP_LOGGER.propagate = False
STEP_LOGGER.addHandler(APILogHandler())


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


@dataclass(frozen=True)
class _Row:
    state: str
    attempt: int
    following: bool
    not_before: datetime | None
    dispatched: bool  # has a flow run of its own (a Docker-pool workflow's step)
    calc: Calculation  # as read: its attempt starts from it, without reading it again

    @classmethod
    def of(cls, calc: Calculation) -> _Row:
        following = calc.cached_from_id is not None
        return cls(calc.state, calc.attempt, following, calc.not_before, calc.flow_run_id is not None, calc)


def _row(calculation_id: UUID) -> _Row:
    return _Row.of(Calculation.objects.get(id=calculation_id))


async def _execute_attempts(calculation_id: UUID, run_logger: Any, flow_run_id: UUID, row: _Row | None) -> str:
    """Execute the step's calculation here until it has ended: each attempt in turn (after its
    backoff), or watching the identical calculation it follows; its final state. (`row`: the
    calculation as its creation left it, which saves a query per step.)"""
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
            state = await CalculationRun(calculation_id, run_logger).execute(flow_run_id=flow_run_id, calc=row.calc)
        except Exception:
            after: _Row = await db(_row)(calculation_id)
            if (after.state, after.attempt) == (row.state, row.attempt):
                raise  # nothing was recorded: running it again would fail the same way
            run_logger.exception("step calculation %s: platform error (recorded)", calculation_id)
            state = None
        if state in TERMINAL_STATES:
            return str(state)
        row = None


def _dispatch_attempt(calculation_id: UUID) -> None:
    """A Docker-pool workflow's step (and each retry of it) runs on the calculation worker as a
    run-calculation flow run of its own, created here (idempotently: one per attempt). Database thread."""
    with get_client(sync_client=True) as client:
        create_flow_run(client, CALCULATION.name, calculation_id)


async def _await_dispatched_attempts(calculation_id: UUID) -> str:
    """Dispatch the step to the calculation worker (again after a retry) until it has ended; its final state."""
    poll = get_settings().worker.cancel_check_seconds
    while True:
        row: _Row = await db(_row)(calculation_id)
        if row.state in TERMINAL_STATES:
            return row.state
        if row.state == S.QUEUED and not row.following and not row.dispatched:
            await db(_dispatch_attempt)(calculation_id)
        await asyncio.sleep(poll)


def _step_summary(calc: Calculation, state: str) -> str:
    """The step's line: its final state, its argv (paths relative to its work directory) and its
    calculation's admin page."""
    record = next((r for r in Provenance.model_validate(calc.provenance).attempts if r.attempt == calc.attempt), None)
    argv = "(not started)"
    if record is not None and record.argv:
        workdir = record.workdir.rstrip("/") + "/"
        argv = shlex.join(arg.replace(workdir, "") if workdir != "/" else arg for arg in record.argv)
    error = f"; {calc.error.strip().splitlines()[0][:300]}" if calc.error.strip() else ""
    page = admin_url("calculation", calc.id)
    return f"{state} (attempt {calc.attempt}){error}; argv: {argv}; calculation: {page}"


@task(name="step", task_run_name="{label}", persist_result=False, cache_policy=NO_CACHE, log_prints=False)
async def execute_step(calculation_id: UUID, label: str, flow_run_id: UUID, remote: bool, row: _Row | None) -> _Ended:
    """One step, as a task run of the workflow's flow run (seen in the dashboard under `label`): its
    attempts executed here, or, `remote`, each dispatched to the calculation worker. Its last log
    line says how it ended (`STEP_LOGGER`)."""
    run_logger = get_run_logger()
    if remote:
        state = await _await_dispatched_attempts(calculation_id)
    else:
        state = await _execute_attempts(calculation_id, run_logger, flow_run_id, row)
    ended: _Ended = await db(_ended)(calculation_id, state)
    extra = getattr(run_logger, "extra", None) or {}
    PrefectLogAdapter(STEP_LOGGER, extra).info("%s", ended.summary)
    return ended


@dataclass(frozen=True)
class _Ended:
    result: StepResult
    error: str  # its error, or who canceled it
    summary: str  # its line in the task run's logs (`_step_summary`)


def _ended(calculation_id: UUID, state: str | None = None) -> _Ended:
    """What the step's end gives its flow and its task run's logs, in one read. Database thread."""
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
    return _Ended(result, calc.error or _why_canceled(calc), _step_summary(calc, state or calc.state))


def _why_canceled(calc: Calculation) -> str:
    """Who stopped a CANCELED step (a user's cancel of the step, or its run stopping after a failure)."""
    if calc.state != S.CANCELED:
        return ""
    asked = calc.events.filter(to_state=S.CANCELING).order_by("-created_at").first()
    return f"canceled (cancel requested by {asked.actor})" if asked else "canceled"


@dataclass(frozen=True)
class StepCall:
    """What a flow asked `run_tool` for: a step, its tool, inputs (file ids by role) and parameters."""

    name: str
    index: int
    tool: str
    inputs: Mapping[str, UUID | str]
    params: Mapping[str, Any] | None
    backend: str | None
    use_cache: bool
    resources: Mapping[str, int | None] | None = None
    retry: Mapping[str, Any] | None = None


CREATION_BATCH = 20  # a batch holds the one database thread (every started step's calls) for ~0.1 s


def _create_steps(context: WorkflowContext, calls: list[StepCall]) -> list[Calculation | StepFailed]:
    """Each step's calculation (created, or found from an earlier attempt), or the StepFailed that
    says why it was refused. Database thread."""
    results: list[Calculation | Exception] = [InvalidInput("not created")] * len(calls)
    steps, positions = [], []
    for position, call in enumerate(calls):
        try:
            file_ids = {role: UUID(str(value)) for role, value in call.inputs.items()}
        except ValueError as exc:
            results[position] = exc
            continue
        steps.append(actions.NewStep(
            call.name, call.index, call.tool, file_ids, dict(call.params or {}), call.backend, call.use_cache,
            call.resources, call.retry,
        ))  # fmt: skip
        positions.append(position)
    try:  # (a stopped run refuses each step; only a run that is gone refuses them all)
        created = actions.do_create_steps(context.workflow_run_id, context.attempt, steps) if steps else []
    except NotFound as exc:
        created = [exc] * len(steps)
    for position, calc in zip(positions, created, strict=True):
        results[position] = calc
    return [
        StepFailed(call.name, call.index, call.tool, "not started", str(result), None)
        if isinstance(result, Exception)
        else result
        for call, result in zip(calls, results, strict=True)
    ]


async def _create_in_batches(context: WorkflowContext) -> None:
    """Create the steps the flow asked for, a batch at a time, in the order asked, until none waits."""
    while context.uncreated:
        # (a step whose caller is gone, its flow canceled meanwhile, is not created)
        waiting = [(call, future) for call, future in context.uncreated if not future.done()]
        batch, context.uncreated = waiting[:CREATION_BATCH], waiting[CREATION_BATCH:]
        if not batch:
            return
        try:
            results: list[Calculation | StepFailed] = await db(_create_steps)(context, [call for call, _ in batch])
        except Exception as exc:  # (the database gone for longer than `db` retries): each caller raises it
            results = [exc] * len(batch)  # type: ignore[list-item]
        for (_call, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was canceled meanwhile
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


async def create_step(context: WorkflowContext, call: StepCall) -> Calculation:
    """The step's calculation, created (or found again) with the others the flow asks for meanwhile:
    a map's thousand steps, created one by one, held every started step's own database calls behind
    them in the one database thread (the first step started after 8 s), and each paid for its own
    transaction and lookups. StepFailed if refused."""
    future: asyncio.Future[Calculation] = asyncio.get_running_loop().create_future()
    context.uncreated.append((call, future))
    if context.creator is None or context.creator.done():
        context.creator = asyncio.create_task(_create_in_batches(context))
    return await future


async def run_step(context: WorkflowContext, call: StepCall) -> StepResult:
    """Create the step and execute it until it has ended; its outputs, or StepFailed."""
    calc = await create_step(context, call)
    if calc.state not in TERMINAL_STATES:
        label = f"{call.name}: {call.tool}" + (f" [{call.index}]" if call.index else "")
        ended: _Ended = await execute_step(calc.id, label, context.flow_run_id, context.remote, _Row.of(calc))
    else:  # answered by the cache at once: no task run
        ended = await db(_ended)(calc.id)
    if ended.result.state != S.COMPLETE:
        raise StepFailed(call.name, call.index, call.tool, ended.result.state, ended.error, calc.id)
    return ended.result
