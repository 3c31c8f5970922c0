"""Running one attempt of a calculation: stage inputs, run the tool, validate and register outputs.

This is the single submission path, above the backends: whatever runs the tool, the working
directory, staging, output validation and every state change happen here, through the actions.
Database calls run in asgiref's one shared thread (sync ORM, one connection), so thousands of
calculations wait concurrently in one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from calculations import actions
from calculations.actions import JobOutcome, OutputBlob
from calculations.errors import InvalidTransition
from calculations.logs import tail_of_file
from calculations.models import Calculation, CalculationInput
from calculations.policies import AttemptEnd
from calculations.states import CalculationState
from calculations.storage import StorageError, get_storage
from calculations.tes import TES_TOOL
from calculations.tools import ToolSpec, get_tool
from calculations.workdirs import attempt_dir, log_paths, staged_input_name
from emgapiv2.config import get_settings
from workflows import step_slots
from workflows.backends import (
    BackendUnavailable,
    ExecutionBackend,
    JobHandle,
    JobLimit,
    JobSpec,
    JobState,
    JobStatus,
    get_backend,
)
from workflows.db import db
from workflows.identity import this_worker
from workflows.inflight import get_inflight_watcher

S = CalculationState
ERROR_TAIL_CHARS = 4000
# how a job the backend saw end ended (success is decided once the outputs are checked)
JOB_ENDS = {
    (JobStatus.FAILED, None): AttemptEnd.TOOL_FAILED,
    (JobStatus.FAILED, JobLimit.MEMORY): AttemptEnd.OUT_OF_MEMORY,
    (JobStatus.FAILED, JobLimit.TIME): AttemptEnd.TIME_LIMIT,
    (JobStatus.CANCELED, None): AttemptEnd.CANCELED,
    (JobStatus.LOST, None): AttemptEnd.JOB_LOST,
    (JobStatus.STOPPED, None): AttemptEnd.STOPPED_OUTSIDE,
}


class OutputMissing(Exception):
    pass


def input_blobs(calculation_id: UUID) -> list[tuple[str, str, str]]:
    """(role, file name, sha256) of each input."""
    links = CalculationInput.objects.filter(calculation_id=calculation_id)
    return list(links.values_list("role", "file__name", "file__sha256"))


def _stage_inputs(inputs: list[tuple[str, str, str]], base: Path, workdir: Path) -> dict[str, Path]:
    """Copy each input blob to `inputs/<role>/<role><extension>` (tools may read a format from the
    extension, and may write to their inputs without harming the stored blob); the paths given to
    the tool are relative to its working directory. So a user's file name never reaches argv, logs
    or outputs (hmmsearch writes its input paths), which a cache hit shows other users, and identical
    calculations have one argv. File I/O only: the ORM stays in the worker's one database thread (a
    thread of its own would keep a connection no one renews)."""
    storage = get_storage()
    staged: dict[str, Path] = {}
    (base / "inputs").mkdir(parents=True, exist_ok=True)
    for role, name, sha256 in inputs:
        destination = base / "inputs" / role / staged_input_name(role, name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        storage.copy_to_path(sha256, destination)
        staged[role] = Path(os.path.relpath(destination, workdir))
    return staged


class OutputsTooLarge(Exception):
    pass


def _collect_outputs(spec: ToolSpec, workdir: Path) -> list[OutputBlob]:
    """Store every declared output; refuse missing or empty required ones, anything that resolves
    outside the working directory (a symlink to elsewhere), and outputs past the tool's limit
    (checked before a byte is stored)."""
    storage = get_storage()
    root = workdir.resolve()
    found: list[tuple[str, Path]] = []
    for role in spec.outputs:
        paths = [
            path
            for path in sorted(workdir.glob(role.path))
            if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root)
        ]
        if role.required and not any(path.stat().st_size > 0 for path in paths):
            raise OutputMissing(f"{spec.name} produced no {role.name!r} output ({role.path} missing or empty)")
        found += [(role.name, path) for path in paths]
    total, limit = sum(path.stat().st_size for _, path in found), get_settings().quota.output_limit(spec.name)
    if total > limit:
        raise OutputsTooLarge(
            f"{spec.name} produced {total} bytes of outputs; the limit for {spec.name} is {limit} bytes "
            "(EMGAPI_QUOTA__MAX_OUTPUT_BYTES, EMGAPI_QUOTA__TOOL_OUTPUT_BYTES): split the input into smaller parts"
        )
    outputs = []
    for role_name, path in found:
        info = storage.put_path(path)
        outputs.append(OutputBlob(role=role_name, name=path.name, sha256=info.sha256, size=info.size))
    return outputs


def _tool_output_tail(calculation_id: UUID, attempt: int) -> str:
    """The end of the tool's stderr (or of its stdout if stderr is empty), for error messages."""
    stdout_path, stderr_path = log_paths(calculation_id, attempt)
    for path in (stderr_path, stdout_path):
        if text := tail_of_file(path, ERROR_TAIL_CHARS)[0].strip():
            return text
    return ""


def store_logs(calculation_id: UUID, attempt: int) -> tuple[str | None, str | None]:
    storage = get_storage()
    shas: list[str | None] = []
    for path in log_paths(calculation_id, attempt):
        shas.append(storage.put_path(path).sha256 if path.exists() else None)
    return shas[0], shas[1]


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
        self.backend_name = "local"
        self.backend: ExecutionBackend  # chosen from the calculation's row once it starts
        self.attempt = 0

    async def execute(self, flow_run_id: UUID | None = None) -> CalculationState:
        calc = await db(Calculation.objects.get)(id=self.calculation_id)
        if calc.state != S.QUEUED:
            self.logger.info("calculation %s is %s: nothing to run", calc.id, calc.state)
            return CalculationState(calc.state)
        self.attempt = calc.attempt
        self.backend_name = calc.backend or "local"
        spec = None if calc.tool == TES_TOOL else get_tool(calc.tool)  # a TES task runs its own executors
        base = attempt_dir(calc.id, self.attempt)
        workdir = base / ("work" if spec else "fs")
        start = partial(
            db(actions.do_start_calculation), calc.id, self.attempt, flow_run_id=flow_run_id,
            backend=self.backend_name, host=socket.gethostname(), workdir=str(workdir), worker=this_worker().name,
        )  # fmt: skip
        run_id = calc.workflow_run_id
        slot = AsyncExitStack()  # a step's local slot, from its start to its end
        try:
            if run_id is not None:  # a step waits, QUEUED, for its owner's quota and a local slot
                turn = step_slots.turn(calc.id, self.attempt, calc.owner_id, run_id, self.backend_name, start)
                await slot.enter_async_context(turn)
            else:
                await start()
        except InvalidTransition as exc:
            self.logger.info("not starting: %s", exc)
            return await self._current_state()
        watcher = get_inflight_watcher()
        watcher.track(calc.id, self.attempt)  # heartbeats from staging the inputs to storing the outputs
        try:
            if spec is None:
                from workflows.tes_execution import TesTaskRun

                return await TesTaskRun(self, calc, base).execute()
            return await self._run(calc, spec, base, workdir)
        except Exception as exc:
            self.logger.exception("calculation %s failed in the platform", calc.id)
            # the exception's text is not the user's to read: a library may quote what an engine answered
            await self._end(AttemptEnd.PLATFORM_ERROR, f"platform error ({type(exc).__name__}); see the worker's log")
            raise
        finally:
            watcher.untrack(calc.id)
            await slot.aclose()
            if run_id is not None:
                step_slots.step_ended(calc.owner_id)

    async def _run(self, calc: Calculation, spec: ToolSpec, base: Path, workdir: Path) -> CalculationState:
        try:
            self.backend = self.backend_for(self.backend_name)
        except BackendUnavailable as exc:
            return await self._end(AttemptEnd.BACKEND_UNAVAILABLE, str(exc))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            staged = await asyncio.to_thread(_stage_inputs, await db(input_blobs)(calc.id), base, workdir)
        except StorageError as exc:
            return await self._end(AttemptEnd.STORAGE_FAILED, f"could not stage inputs: {exc}")
        params = spec.params_model.model_validate(calc.params)
        argv = spec.build_argv(params, staged)
        stdout_path, stderr_path = log_paths(calc.id, self.attempt)
        job = JobSpec(
            argv=argv,
            workdir=workdir,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            cpus=spec.resources.cpus,
            memory_mb=spec.resources.memory_mb,
            time_limit_seconds=spec.resources.time_limit_seconds,
            name=f"calc-{calc.id}-a{self.attempt}",
            inputs_dir=base / "inputs",
            image=spec.image.name if spec.image else None,
            network=spec.network,
        )
        watcher = get_inflight_watcher()
        if watcher.is_canceling(calc.id) or await self._current_state() == S.CANCELING:
            return await self._end(AttemptEnd.CANCELED, "canceled before the tool started")
        try:
            handle = await self.backend.submit(job)
        except BackendUnavailable as exc:
            return await self._end(AttemptEnd.BACKEND_UNAVAILABLE, f"{self.backend.kind} backend: {exc}")
        except OSError as exc:
            return await self._end(AttemptEnd.TOOL_NOT_STARTED, f"could not start {argv[0]!r}: {exc}")
        executable = None if handle.details.get("image") else shutil.which(spec.executable)
        try:
            await db(actions.do_mark_running)(
                calc.id, self.attempt, job_id=handle.job_id, argv=argv, executable=executable,
                image=handle.details.get("image") or None, image_digest=handle.details.get("image_digest") or None,
                job_details=handle.details,
            )  # fmt: skip
        except InvalidTransition:
            await self.backend.cancel(handle, get_settings().worker.kill_grace_seconds)
            return await self._end(AttemptEnd.CANCELED, "canceled while starting")
        self.logger.info("calculation %s: %s job %s running: %s", calc.id, self.backend.kind, handle.job_id, argv)
        state = await self._wait(handle)
        return await self._record(spec, workdir, base, state)

    async def _wait(self, handle: JobHandle) -> JobState:
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

    async def _record(self, spec: ToolSpec, workdir: Path, base: Path, state: JobState) -> CalculationState:
        try:
            stdout_sha, stderr_sha = await asyncio.to_thread(store_logs, self.calculation_id, self.attempt)
        except StorageError as exc:
            outcome = JobOutcome(state.exit_code, state.resource_usage, None, None)
            return await self._end(AttemptEnd.STORAGE_FAILED, f"could not store the tool's logs: {exc}", outcome)
        outcome = JobOutcome(state.exit_code, state.resource_usage, stdout_sha, stderr_sha)
        if state.status is JobStatus.FAILED:
            detail = _tool_output_tail(self.calculation_id, self.attempt) or "(no output)"
            end = JOB_ENDS[state.status, state.limit]
            return await self._end(end, f"{spec.name} {state.message}:\n{detail}", outcome)
        if state.status is JobStatus.CANCELED:
            return await self._end(AttemptEnd.CANCELED, "canceled; tool stopped", outcome)
        if state.status is not JobStatus.SUCCEEDED:
            return await self._end(JOB_ENDS[state.status, None], state.message, outcome)
        try:
            outputs = await asyncio.to_thread(_collect_outputs, spec, workdir)
        except OutputMissing as exc:
            detail = _tool_output_tail(self.calculation_id, self.attempt)
            return await self._end(AttemptEnd.OUTPUTS_INVALID, f"{exc}:\n{detail}" if detail else str(exc), outcome)
        except OutputsTooLarge as exc:
            return await self._end(AttemptEnd.OUTPUTS_TOO_LARGE, str(exc), outcome)
        except StorageError as exc:
            return await self._end(AttemptEnd.STORAGE_FAILED, f"could not store outputs: {exc}", outcome)
        # a cancel that arrived as the tool finished wins there: no outputs are registered
        final = await self._end(AttemptEnd.SUCCEEDED, "", outcome, outputs)
        if final == S.COMPLETE:  # inputs and outputs are in storage now; the logs too
            await asyncio.to_thread(shutil.rmtree, base, True)
        return final

    async def _current_state(self) -> CalculationState:
        state = await db(lambda: Calculation.objects.values_list("state", flat=True).get(id=self.calculation_id))()
        return CalculationState(state)

    async def _end(
        self,
        end: AttemptEnd,
        message: str = "",
        outcome: JobOutcome | None = None,
        outputs: list[OutputBlob] | None = None,
    ) -> CalculationState:
        """Record how this attempt ended; the policy table (calculations/policies.py) decides what follows."""
        try:
            calc = await db(actions.do_end_attempt)(
                self.calculation_id, self.attempt, end, message=message, outputs=outputs or [], outcome=outcome
            )
        except InvalidTransition as exc:  # fenced: the reconciler or a newer attempt moved it on
            self.logger.info("attempt %s not recorded: %s", self.attempt, exc)
            if outputs:
                await db(actions.do_release_outputs)(outputs)  # stored for nothing: orphans
            return await self._current_state()
        if calc.state != S.COMPLETE:
            self.logger.warning(
                "calculation %s: %s, now %s: %s", self.calculation_id, end.name, calc.state, message[:500]
            )
        return CalculationState(calc.state)
