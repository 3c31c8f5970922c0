"""Running a calculation's current attempt: the single path above the backends, for every program.

`CalculationRun` starts the attempt (a workflow's step first waits for its run's turn and its owner's
quota, and its job for a local slot: `step_slots.py`), has the in-flight watcher heartbeat for it,
and hands it to the runner its program names (`calculations/programs.py`): a tool's
(`tool_runner.py`) or a TES task's (`tes_runner.py`). Whatever runs, the working directory, staging,
output validation and every state change happen in this package, through the actions. An exception
no runner foresaw ends the attempt as a platform error, without its text, which a library may have
filled with what an engine answered.

An `Attempt` is what every runner sees of it, whatever it runs: its backend, the cancel check before
a job starts, a job's start recorded on the row (or the job stopped if the attempt moved on
meanwhile), waiting on a job with the in-flight watcher, and how the attempt ended, recorded through
`do_end_attempt` (the policy table decides what follows; nothing here decides about retries).
Database calls run in asgiref's one shared thread (`workflows/db.py`), so thousands of attempts wait
concurrently in one event loop.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from calculations import actions
from calculations.actions import JobOutcome, OutputBlob
from calculations.errors import InvalidTransition
from calculations.models import Calculation, CalculationInput
from calculations.policies import AttemptEnd
from calculations.programs import get_program
from calculations.states import TERMINAL_STATES, RunState
from calculations.storage import get_storage
from calculations.workdirs import attempt_dir, log_paths
from emgapiv2.config import get_settings
from workflows.backends import (
    BackendUnavailable,
    ExecutionBackend,
    JobHandle,
    JobLimit,
    JobState,
    JobStatus,
    get_backend,
)
from workflows.db import db
from workflows.execution import step_slots
from workflows.execution.inflight import get_inflight_watcher
from workflows.identity import this_worker

S = RunState

# how a job the backend saw end ended (success is decided once the outputs are checked)
JOB_ENDS = {
    (JobStatus.FAILED, None): AttemptEnd.TOOL_FAILED,
    (JobStatus.FAILED, JobLimit.MEMORY): AttemptEnd.OUT_OF_MEMORY,
    (JobStatus.FAILED, JobLimit.TIME): AttemptEnd.TIME_LIMIT,
    (JobStatus.CANCELED, None): AttemptEnd.CANCELED,
    (JobStatus.LOST, None): AttemptEnd.JOB_LOST,
    (JobStatus.STOPPED, None): AttemptEnd.STOPPED_OUTSIDE,
}


def input_blobs(calculation_id: UUID) -> list[tuple[str, str, str]]:
    """(role, file name, sha256) of each input. Database thread."""
    links = CalculationInput.objects.filter(calculation_id=calculation_id)
    return list(links.values_list("role", "file__name", "file__sha256"))


def store_logs(calculation_id: UUID, attempt: int) -> tuple[str | None, str | None]:
    """The attempt's stdout and stderr stored as blobs: their sha256s (None for a missing file). File I/O."""
    storage = get_storage()
    shas: list[str | None] = []
    for path in log_paths(calculation_id, attempt):
        shas.append(storage.put_path(path).sha256 if path.exists() else None)
    return shas[0], shas[1]


class Attempt:
    """One attempt of one calculation, started (INITIALIZING) by `CalculationRun`."""

    backend: ExecutionBackend  # the calculation's backend, set once the attempt has started

    def __init__(self, calculation_id: UUID, number: int, backend_name: str, logger: logging.Logger | Any) -> None:
        self.calculation_id = calculation_id
        self.number = number
        self.backend_name = backend_name
        self.logger = logger
        self.step_slot: step_slots.StepSlot | None = None  # a workflow step's (`step_slots.turn`)

    async def job_slot(self) -> None:
        """Before the attempt's job starts: a workflow step waits for a local slot for it (the run's
        next step starts meanwhile)."""
        if self.step_slot is not None:
            await self.step_slot.job_slot()

    async def job_done(self) -> None:
        """The attempt's last job has ended: a workflow step's local slot goes on now, while this one
        stores its outputs and records its end."""
        if self.step_slot is not None:
            await self.step_slot.job_done()

    async def current_state(self) -> RunState:
        state = await db(lambda: Calculation.objects.values_list("state", flat=True).get(id=self.calculation_id))()
        return RunState(state)

    def is_canceling(self) -> bool:
        """A cancel was asked before the next job starts, as the in-flight watcher saw it. (One that
        arrives after its last look is caught when the job's start is recorded: the row refuses it,
        and the job is stopped at once.)"""
        return get_inflight_watcher().is_canceling(self.calculation_id)

    async def mark_running(self, handle: JobHandle, argv: list[str], executable: str | None = None) -> None:
        """Mark the attempt RUNNING with its first job: its argv, image and digest."""
        await db(actions.do_mark_running)(
            self.calculation_id, self.number, job_id=handle.job_id, argv=argv, executable=executable,
            image=handle.details.get("image") or None, image_digest=handle.details.get("image_digest") or None,
            job_details=handle.details,
        )  # fmt: skip

    async def job_started(self, handle: JobHandle, record: Awaitable[Any]) -> bool:
        """Await `record`, the action that writes the job's start on the row; False, with the job
        stopped, if the attempt was canceled or superseded meanwhile (the row refused it)."""
        try:
            await record
        except InvalidTransition:
            await self.backend.cancel(handle, get_settings().worker.kill_grace_seconds)
            return False
        return True

    async def wait(self, handle: JobHandle) -> JobState:
        """The job's final state; the job is stopped first if a cancel arrives (or the attempt is superseded)."""
        settings = get_settings().worker
        watcher = get_inflight_watcher()
        while True:
            state = await self.backend.wait(handle, settings.cancel_check_seconds)
            if state.is_final:
                return state
            if watcher.is_canceling(self.calculation_id):
                self.logger.info(
                    "calculation %s: cancel requested (or attempt superseded), stopping job %s",
                    self.calculation_id,
                    handle.job_id,
                )
                await self.backend.cancel(handle, settings.kill_grace_seconds)
                return await self.backend.poll(handle)

    async def end(
        self,
        end: AttemptEnd,
        message: str = "",
        outcome: JobOutcome | None = None,
        outputs: list[OutputBlob] | None = None,
    ) -> RunState:
        """Record how this attempt ended; the policy table (calculations/policies.py) decides what follows."""
        try:
            calc = await db(actions.do_end_attempt)(
                self.calculation_id, self.number, end, message=message, outputs=outputs or [], outcome=outcome
            )
        except InvalidTransition as exc:  # fenced: the reconciler or a newer attempt moved it on
            self.logger.info("attempt %s not recorded: %s", self.number, exc)
            if outputs:
                await db(actions.do_release_outputs)(outputs)  # stored for nothing: orphans
            return await self.current_state()
        if calc.state != S.COMPLETE:
            self.logger.warning(
                "calculation %s: %s, now %s: %s", self.calculation_id, end.name, calc.state, message[:500]
            )
        return RunState(calc.state)


class AttemptRunner(Protocol):
    """What executes an attempt of one kind of program (`calculations.programs.Program.runner`)."""

    workdir: str  # the folder of the attempt's directory where its jobs work ("work", a TES task's "fs")

    async def run(self, attempt: Attempt, calc: Calculation, base: Path) -> RunState:
        """Run the started attempt in its directory `base` until it has ended; its final state."""
        ...


# the runner of each kind of program (`calculations.programs.Program.runner`), for a calculation: the
# runners build on `Attempt` here, and the package (`workflows/execution/__init__.py`) lists them
RUNNERS: dict[str, Callable[[Calculation], AttemptRunner]] = {}


class CalculationRun:
    """One attempt of one calculation on one backend."""

    def __init__(
        self,
        calculation_id: UUID,
        logger: logging.Logger | Any,
        *,
        backend_for: Callable[[str], ExecutionBackend] = get_backend,
    ) -> None:
        self.calculation_id = calculation_id
        self.logger = logger
        self.backend_for = backend_for

        self.refusal = ""  # why nothing ran, when nothing could (the calculation is gone, or not QUEUED)

    async def execute(self, flow_run_id: UUID | None = None, *, calc: Calculation | None = None) -> RunState | None:
        """Run the current attempt; its final state (None: the calculation does not exist). The row is
        read once, here (or given, as the caller just read it); from then on every change goes through
        a guarded action, which refuses one the row no longer allows."""
        if calc is None:
            calc = await db(Calculation.objects.filter(id=self.calculation_id).first)()
        if calc is None:
            self.refusal = f"calculation {self.calculation_id} does not exist"
            return None
        if calc.state != S.QUEUED:
            if calc.state == S.CANCELED:
                self.refusal = f"calculation {calc.id}: CANCELED before it started"
            elif calc.state in TERMINAL_STATES:
                self.refusal = (
                    f"calculation {calc.id} already ended {calc.state}: nothing to run again "
                    "(submit it anew through the API, with use_cache false, to rerun it)"
                )
            else:
                self.refusal = f"calculation {calc.id} is {calc.state}: another flow run has it"
            self.logger.info(self.refusal)
            return RunState(calc.state)
        attempt = Attempt(calc.id, calc.attempt, calc.backend or "local", self.logger)
        runner = RUNNERS[get_program(calc.tool).runner](calc)
        base = attempt_dir(calc.id, attempt.number)
        start = partial(
            db(actions.do_start_calculation), calc.id, attempt.number, flow_run_id=flow_run_id,
            backend=attempt.backend_name, host=socket.gethostname(), workdir=str(base / runner.workdir),
            worker=this_worker().name,
        )  # fmt: skip
        run_id = calc.workflow_run_id
        slot = AsyncExitStack()  # a step's turn in its run, then its job's local slot
        try:
            if run_id is not None:  # a step waits, QUEUED, for its run's turn and its owner's quota
                turn = step_slots.turn(calc.id, attempt.number, calc.owner_id, run_id, attempt.backend_name, start)
                attempt.step_slot = await slot.enter_async_context(turn)
            else:
                await start()
        except InvalidTransition as exc:
            self.logger.info("not starting: %s", exc)
            return await attempt.current_state()
        watcher = get_inflight_watcher()
        watcher.track(calc.id, attempt.number)  # heartbeats from staging the inputs to storing the outputs
        try:
            try:
                attempt.backend = self.backend_for(attempt.backend_name)
            except BackendUnavailable as exc:
                return await attempt.end(AttemptEnd.BACKEND_UNAVAILABLE, str(exc))
            return await runner.run(attempt, calc, base)
        except Exception as exc:
            self.logger.exception("calculation %s failed in the platform", calc.id)
            # the exception's text is not the user's to read: a library may quote what an engine answered
            await attempt.end(AttemptEnd.PLATFORM_ERROR, f"platform error ({type(exc).__name__}); see the worker's log")
            raise
        finally:
            watcher.untrack(calc.id)
            await slot.aclose()
            if run_id is not None:
                step_slots.step_ended(calc.owner_id)
