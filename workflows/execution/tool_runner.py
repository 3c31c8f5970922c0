"""A tool's attempt: its inputs staged, its argv built from the tool's spec and run as one job on the
calculation's backend, then its outputs validated and stored (`calculation_runs.py` starts the
attempt and chooses this runner)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from uuid import UUID

from calculations.actions import JobOutcome, OutputBlob
from calculations.logs import tail_of_file
from calculations.models import Calculation
from calculations.policies import AttemptEnd
from calculations.resources import attempt_resources
from calculations.states import RunState
from calculations.storage import StorageError, get_storage
from calculations.tools import ToolSpec
from calculations.workdirs import log_paths, remove_attempt_dir, staged_input_name
from emgapiv2.config import get_settings
from workflows.backends import BackendUnavailable, JobSpec, JobState, JobStatus
from workflows.db import db
from workflows.execution.calculation_runs import JOB_ENDS, Attempt, input_blobs, store_logs

S = RunState
ERROR_TAIL_CHARS = 4000


class OutputMissing(Exception):
    pass


class OutputsTooLarge(Exception):
    pass


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


class ToolRunner:
    """A registered tool's attempt: one job, the tool's argv."""

    workdir = "work"

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec

    async def run(self, attempt: Attempt, calc: Calculation, base: Path) -> RunState:
        spec, workdir = self.spec, base / self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            staged = await asyncio.to_thread(_stage_inputs, await db(input_blobs)(calc.id), base, workdir)
        except StorageError as exc:
            return await attempt.end(AttemptEnd.STORAGE_FAILED, f"could not stage inputs: {exc}")
        params = spec.params_model.model_validate(calc.params)
        argv = spec.build_argv(params, staged)
        stdout_path, stderr_path = log_paths(calc.id, attempt.number)
        given = attempt_resources(spec.resources, calc.provenance, attempt.number)
        job = JobSpec(
            argv=argv,
            workdir=workdir,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            cpus=given["cpus"],
            memory_mb=given["memory_mb"],
            time_limit_seconds=given["time_limit_seconds"],
            gpus=given["gpus"],
            name=f"calc-{calc.id}-a{attempt.number}",
            inputs_dir=base / "inputs",
            image=spec.image.name if spec.image else None,
            network=spec.network,
        )
        await attempt.job_slot()
        if attempt.is_canceling():
            return await attempt.end(AttemptEnd.CANCELED, "canceled before the tool started")
        backend = attempt.backend
        try:
            handle = await backend.submit(job)
        except BackendUnavailable as exc:
            return await attempt.end(AttemptEnd.BACKEND_UNAVAILABLE, f"{backend.kind} backend: {exc}")
        except OSError as exc:
            return await attempt.end(AttemptEnd.TOOL_NOT_STARTED, f"could not start {argv[0]!r}: {exc}")
        executable = None if handle.details.get("image") else shutil.which(spec.executable)
        if not await attempt.job_started(handle, attempt.mark_running(handle, argv, executable)):
            return await attempt.end(AttemptEnd.CANCELED, "canceled while starting")
        attempt.logger.info("calculation %s: %s job %s running: %s", calc.id, backend.kind, handle.job_id, argv)
        state = await attempt.wait(handle)
        await attempt.job_done()
        return await self._record(attempt, workdir, base, state)

    async def _record(self, attempt: Attempt, workdir: Path, base: Path, state: JobState) -> RunState:
        calculation_id, number, spec = attempt.calculation_id, attempt.number, self.spec
        try:
            stdout_sha, stderr_sha = await asyncio.to_thread(store_logs, calculation_id, number)
        except StorageError as exc:
            outcome = JobOutcome(state.exit_code, state.resource_usage, None, None)
            return await attempt.end(AttemptEnd.STORAGE_FAILED, f"could not store the tool's logs: {exc}", outcome)
        outcome = JobOutcome(state.exit_code, state.resource_usage, stdout_sha, stderr_sha)
        if state.status is JobStatus.FAILED:
            detail = _tool_output_tail(calculation_id, number) or "(no output)"
            end = JOB_ENDS[state.status, state.limit]
            return await attempt.end(end, f"{spec.name} {state.message}:\n{detail}", outcome)
        if state.status is JobStatus.CANCELED:
            return await attempt.end(AttemptEnd.CANCELED, "canceled; tool stopped", outcome)
        if state.status is not JobStatus.SUCCEEDED:
            return await attempt.end(JOB_ENDS[state.status, None], state.message, outcome)
        try:
            outputs = await asyncio.to_thread(_collect_outputs, spec, workdir)
        except OutputMissing as exc:
            detail = _tool_output_tail(calculation_id, number)
            return await attempt.end(AttemptEnd.OUTPUTS_INVALID, f"{exc}:\n{detail}" if detail else str(exc), outcome)
        except OutputsTooLarge as exc:
            return await attempt.end(AttemptEnd.OUTPUTS_TOO_LARGE, str(exc), outcome)
        except StorageError as exc:
            return await attempt.end(AttemptEnd.STORAGE_FAILED, f"could not store outputs: {exc}", outcome)
        # a cancel that arrived as the tool finished wins there: no outputs are registered
        final = await attempt.end(AttemptEnd.SUCCEEDED, "", outcome, outputs)
        if final == S.COMPLETE:  # inputs and outputs are in storage now; the logs too
            await asyncio.to_thread(remove_attempt_dir, base)
        return final
