"""One attempt of a calculation, as every runner sees it, whatever the attempt runs (a tool's argv, a
TES task's executors: `calculations/programs.py` says which runner): its backend, the cancel check
before a job starts, a job's start recorded on the row (or the job stopped if the attempt moved on
meanwhile), waiting on a job with the in-flight watcher, and how the attempt ended, recorded through
`do_end_attempt` (the policy table, `calculations/policies.py`, decides what follows; nothing here
decides about retries).

Database calls run in asgiref's one shared thread (`workflows/db.py`), so thousands of attempts wait
concurrently in one event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from calculations import actions
from calculations.actions import JobOutcome, OutputBlob
from calculations.errors import InvalidTransition
from calculations.models import Calculation, CalculationInput
from calculations.policies import AttemptEnd
from calculations.states import RunState
from calculations.storage import get_storage
from calculations.workdirs import log_paths
from emgapiv2.config import get_settings
from workflows.backends import ExecutionBackend, JobHandle, JobLimit, JobState, JobStatus
from workflows.db import db
from workflows.execution.inflight import get_inflight_watcher

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
