"""A GA4GH TES task's attempt: its inputs placed at their container paths, its executors run in turn
(each one container, on the container backend or in a Slurm job), then its outputs stored as the
owner's files (`task_trees.py` does the file work).

It is a tool's path with several jobs instead of one: the same `Attempt` (backend, cancel checks,
start and end), heartbeats, log files (each executor appends to the attempt's pair), policy table and
provenance. Its scratch space (`resources.disk_gb`) is measured while an executor runs and after it,
and removed as the attempt ends, whatever its end.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from calculations.actions import JobOutcome, OutputBlob
from calculations.actions.tes import do_record_tes_log
from calculations.errors import InvalidTransition
from calculations.models import Calculation, TesTask
from calculations.policies import AttemptEnd
from calculations.states import RunState
from calculations.storage import StorageError
from calculations.tes.paths import MountPlan
from calculations.tes.schemas import ExecutorIn, TaskIn
from calculations.workdirs import log_paths, remove_attempt_dir
from emgapiv2.config import get_settings
from workflows.backends import BackendUnavailable, JobSpec, JobStatus
from workflows.backends.base import JobHandle, JobState, Mount
from workflows.db import db
from workflows.execution.calculation_runs import JOB_ENDS, Attempt, input_blobs, store_logs
from workflows.execution.task_trees import (
    OutputProblem,
    UnreachableLocation,
    collect_outputs,
    copy_segment,
    scratch_problem,
    stage_inputs,
)

S = RunState


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _segment(path: Path, start: int, limit: int) -> tuple[str, int]:
    """The end (at most `limit` bytes) of what `path` gained after `start`, and its size now."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", start
    with path.open("rb") as handle:
        handle.seek(max(start, size - limit))
        return handle.read(max(size - start, 0)).decode("utf-8", errors="replace"), size


def _argv(executor: ExecutorIn) -> list[str]:
    if executor.stdin:  # the one case that needs a shell in the image; the path is an argument, never code
        return ["/bin/sh", "-c", 'exec "$@" < "$0"', executor.stdin, *executor.command]
    return list(executor.command)


class TesTaskRunner:
    """One attempt of one TES task: its executors in turn, on the attempt's backend."""

    workdir = "fs"

    def __init__(self) -> None:
        self.usage: dict[str, float] = {}
        self.last_exit: int | None = None
        self.disk_bytes = 0

    async def run(self, attempt: Attempt, calc: Calculation, base: Path) -> RunState:
        self.attempt, self.calc, self.base = attempt, calc, base
        self.fs = base / self.workdir
        self.stdout_path, self.stderr_path = log_paths(calc.id, attempt.number)
        state = await self._attempt()
        await self._drop_scratch()  # after an end that staging met (`attempt.end`)
        return state

    async def _drop_scratch(self) -> None:
        """The attempt is over, whatever its end: its scratch goes (its outputs and logs are stored;
        the sweeper takes the rest), before the end is seen, so that no one finds it afterwards."""
        await asyncio.to_thread(shutil.rmtree, self.fs, True)

    async def _attempt(self) -> RunState:
        attempt = self.attempt
        tes = await db(TesTask.objects.get)(calculation_id=self.calc.id)
        task = TaskIn.model_validate(tes.spec["task"])
        plan = MountPlan(tuple(tes.spec["mounts"]))
        resources: dict[str, int] = tes.spec["resources"]
        self.disk_bytes = resources.get("disk_bytes") or int(get_settings().tes.default_disk_gb * 1024**3)
        blobs = {role: sha256 for role, _name, sha256 in await db(input_blobs)(self.calc.id)}
        try:
            await asyncio.to_thread(stage_inputs, task, plan, self.fs, blobs, tes.spec.get("external_inputs", {}),
                                    tes.spec.get("unreachable", []))  # fmt: skip
        except UnreachableLocation as exc:
            return await attempt.end(AttemptEnd.LOCATION_UNREACHABLE, f"cannot run this task here: {exc}")
        except (StorageError, OSError) as exc:
            return await attempt.end(AttemptEnd.STORAGE_FAILED, f"could not place the inputs: {exc}")
        if problem := await asyncio.to_thread(scratch_problem, self.fs, self.disk_bytes):
            return await self._end(AttemptEnd.SCRATCH_EXCEEDED, f"the inputs alone: {problem}")
        for path in (self.stdout_path, self.stderr_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        mounts = tuple(Mount(str(plan.host_path(self.fs, d)), d, "rw") for d in plan.directories)
        for index, executor in enumerate(task.executors):
            ended = await self._execute(index, executor, mounts, resources)
            if ended is not None:
                return ended
        return await self._finish(task, plan)

    async def _execute(
        self, index: int, executor: ExecutorIn, mounts: tuple[Mount, ...], resources: dict[str, int]
    ) -> RunState | None:
        """Run executor `index`; a state if the attempt ended with it, None to go on."""
        attempt, calc, backend = self.attempt, self.calc, self.attempt.backend
        await attempt.job_slot()
        if attempt.is_canceling():
            return await self._end(AttemptEnd.CANCELED, f"canceled before executor {index} started")
        argv = _argv(executor)
        job = JobSpec(
            argv=argv, workdir=self.fs, stdout_path=self.stdout_path, stderr_path=self.stderr_path,
            cpus=resources["cpus"], memory_mb=resources["memory_mb"],
            time_limit_seconds=resources["time_limit_seconds"],
            env=dict(executor.env or {}), name=f"calc-{calc.id}-a{attempt.number}-e{index}", image=executor.image,
            mounts=mounts, container_workdir=executor.workdir,
        )  # fmt: skip
        starts = (self.stdout_path.stat().st_size, self.stderr_path.stat().st_size)
        started = _now()
        try:
            handle = await backend.submit(job)
        except BackendUnavailable as exc:
            return await self._end(AttemptEnd.BACKEND_UNAVAILABLE, f"executor {index}: {backend.kind}: {exc}")
        # the first executor marks the attempt RUNNING; each later one records its job on the row
        record = (
            attempt.mark_running(handle, argv)
            if index == 0
            else db(do_record_tes_log)(calc.id, attempt.number, job_id=handle.job_id)
        )
        if not await attempt.job_started(handle, record):
            return await self._end(AttemptEnd.CANCELED, "canceled while starting")
        attempt.logger.info("TES task %s: executor %s (%s) is %s job %s", calc.id, index, executor.image,
                            backend.kind, handle.job_id)  # fmt: skip
        state, over = await self._wait_within_scratch(handle)
        await attempt.job_done()
        await self._record(index, executor, state, starts, started)
        self.last_exit = state.exit_code
        for name, value in state.resource_usage.items():
            self.usage[name] = self.usage.get(name, 0.0) + value
        # measured once more: an executor may have written past the limit since the last look
        if over := over or await asyncio.to_thread(scratch_problem, self.fs, self.disk_bytes):
            return await self._end(AttemptEnd.SCRATCH_EXCEEDED, f"executor {index} ({executor.image}): {over}")
        if state.status is JobStatus.SUCCEEDED or (state.status is JobStatus.FAILED and executor.ignore_error):
            return None
        if state.status is JobStatus.CANCELED:
            return await self._end(AttemptEnd.CANCELED, "canceled; executor stopped")
        end = JOB_ENDS[state.status, state.limit if state.status is JobStatus.FAILED else None]
        tail = (await asyncio.to_thread(_segment, self.stderr_path, starts[1], 4000))[0].strip()
        message = f"executor {index} ({executor.image}) {state.message}" + (f":\n{tail}" if tail else "")
        return await self._end(end, message)

    async def _wait_within_scratch(self, handle: JobHandle) -> tuple[JobState, str | None]:
        """The executor's end as `Attempt.wait` gives it; if the task's directories outgrow its scratch
        space first, the executor is stopped at once, and the second item says why."""
        waiting = asyncio.ensure_future(self.attempt.wait(handle))
        watching = asyncio.ensure_future(self._watch_scratch())
        try:
            await asyncio.wait((waiting, watching), return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                return waiting.result(), None
            await self.attempt.backend.cancel(handle, 0)
            return await waiting, watching.result()
        finally:
            watching.cancel()
            waiting.cancel()

    async def _watch_scratch(self) -> str:
        """Returns only once the task's directories hold more than its scratch space: why."""
        interval = get_settings().tes.scratch_check_seconds
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            if problem := await asyncio.to_thread(scratch_problem, self.fs, self.disk_bytes):
                return problem
            # a tree of many files costs a walk each time: at most a tenth of the time goes to it
            await asyncio.sleep(9 * (time.monotonic() - started))

    async def _record(
        self, index: int, executor: ExecutorIn, state: JobState, starts: tuple[int, int], started: str
    ) -> None:
        limit = get_settings().tes.executor_log_bytes
        stdout, stdout_end = await asyncio.to_thread(_segment, self.stdout_path, starts[0], limit)
        stderr, stderr_end = await asyncio.to_thread(_segment, self.stderr_path, starts[1], limit)
        notes = []
        for name, source, start, end in (("stdout", self.stdout_path, starts[0], stdout_end),
                                         ("stderr", self.stderr_path, starts[1], stderr_end)):  # fmt: skip
            if target := getattr(executor, name):
                try:
                    await asyncio.to_thread(copy_segment, source, start, end, self.fs, target)
                except (OSError, OutputProblem) as exc:
                    notes.append(f"executor {index}: could not write its {name} to {target}: {exc}")
        log = {"start_time": started, "end_time": _now(), "exit_code": state.exit_code, "stdout": stdout,
               "stderr": stderr}  # fmt: skip
        try:
            await db(do_record_tes_log)(
                self.calc.id, self.attempt.number, executor=log, system_log="\n".join(notes) or None
            )
        except InvalidTransition:
            pass  # superseded: its end is recorded (or refused) by `_end`

    async def _finish(self, task: TaskIn, plan: MountPlan) -> RunState:
        try:
            outputs, entries = await asyncio.to_thread(collect_outputs, task, plan, self.fs)
        except OutputProblem as exc:
            return await self._end(AttemptEnd.OUTPUTS_INVALID, str(exc))
        except StorageError as exc:
            return await self._end(AttemptEnd.STORAGE_FAILED, f"could not store outputs: {exc}")
        try:
            await db(do_record_tes_log)(self.calc.id, self.attempt.number, outputs=entries)
        except InvalidTransition:
            pass
        final = await self._end(AttemptEnd.SUCCEEDED, "", outputs)
        if final == S.COMPLETE:
            await asyncio.to_thread(remove_attempt_dir, self.base)
        return final

    async def _end(self, end: AttemptEnd, message: str, outputs: list[OutputBlob] | None = None) -> RunState:
        """The attempt's end, once its scratch is gone and its logs are stored."""
        await self._drop_scratch()
        try:
            stdout_sha, stderr_sha = await asyncio.to_thread(store_logs, self.calc.id, self.attempt.number)
        except StorageError:
            stdout_sha = stderr_sha = None
        outcome = JobOutcome(self.last_exit, self.usage, stdout_sha, stderr_sha)
        return await self.attempt.end(end, message, outcome, outputs)
