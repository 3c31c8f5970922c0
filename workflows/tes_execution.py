"""Running one attempt of a GA4GH TES task: its inputs placed at their container paths, its
executors run in turn (each one container, on the container backend or in a Slurm job), then its
outputs stored as the owner's files.

It is `CalculationRun`'s path with several jobs instead of one: the same backends, cancel checks,
heartbeats, log files (each executor appends to the attempt's pair), policy table and provenance.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from calculations import actions
from calculations.actions import JobOutcome, OutputBlob
from calculations.actions.tes import do_record_tes_log, input_role
from calculations.errors import InvalidTransition
from calculations.models import Calculation, TesTask
from calculations.policies import AttemptEnd
from calculations.states import CalculationState
from calculations.storage import StorageError, get_storage
from calculations.tes import TES_TOOL
from calculations.tes.external import download_object
from calculations.tes.paths import WILDCARD, MountPlan, static_dir
from calculations.tes.schemas import ExecutorIn, FileType, TaskIn
from calculations.workdirs import log_paths
from emgapiv2.config import get_settings
from workflows.backends import BackendUnavailable, JobSpec, JobStatus
from workflows.backends.base import JobState, Mount
from workflows.db import db
from workflows.execution import JOB_ENDS, CalculationRun, input_blobs, store_logs
from workflows.inflight import get_inflight_watcher

S = CalculationState


class OutputProblem(Exception):
    pass


class UnreachableLocation(Exception):
    """A location the task names that this deployment cannot read or write."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _inside(root: Path, path: Path) -> bool:
    """Whether `path`, every link followed, is under `root`: a container may leave symlinks in the
    directories it shares with the host, and the worker must never read or write through them."""
    return path.resolve().is_relative_to(root.resolve())


def _segment(path: Path, start: int, limit: int) -> tuple[str, int]:
    """The end (at most `limit` bytes) of what `path` gained after `start`, and its size now."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", start
    with path.open("rb") as handle:
        handle.seek(max(start, size - limit))
        return handle.read(max(size - start, 0)).decode("utf-8", errors="replace"), size


def _open_inside(root: Path, container_path: str) -> int:
    """A descriptor for writing the host file at `container_path` under `root`, opened one directory
    at a time without following links (an executor may have left a symlink anywhere on the way, and
    the worker must create nothing outside the task's tree), and only if it is a regular file: a
    FIFO would block the worker until someone read it."""
    parts = PurePosixPath(container_path).parts[1:]
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=directory)
            except FileExistsError:
                pass
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            except OSError:  # ELOOP, ENOTDIR: a link, or a file where a directory should be
                raise OutputProblem(f"{container_path}: {part!r} on the way is a link or not a directory") from None
            os.close(directory)
            directory = inner
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            descriptor = os.open(parts[-1], flags, 0o644, dir_fd=directory)
        except OSError:  # ELOOP (a link), ENXIO (a FIFO no one reads), EISDIR
            raise OutputProblem(f"{container_path} is not a regular file") from None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OutputProblem(f"{container_path} is not a regular file")
    os.set_blocking(descriptor, True)
    os.ftruncate(descriptor, 0)
    return descriptor


def _copy_segment(source: Path, start: int, end: int, root: Path, container_path: str) -> None:
    """An executor's own stdout or stderr, to the container path it asked for."""
    with source.open("rb") as reader, os.fdopen(_open_inside(root, container_path), "wb") as writer:
        reader.seek(start)
        remaining = end - start
        while remaining > 0 and (chunk := reader.read(min(remaining, 1024 * 1024))):
            writer.write(chunk)
            remaining -= len(chunk)


def _stage(
    task: TaskIn,
    plan: MountPlan,
    fs: Path,
    blobs: dict[str, str],
    external: dict[str, Any],
    unreachable: list[dict[str, str]],
) -> None:
    """Each input at its place (copied: an executor may change it without harming the stored blob).
    First, a URL the task names that this deployment cannot reach ends it: nothing would run."""
    if unreachable:
        raise UnreachableLocation("; ".join(f"{item['where']}: {item['reason']}" for item in unreachable))
    storage = get_storage()
    for directory in plan.directories:
        plan.host_path(fs, directory).mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(task.inputs or ()):
        destination = plan.host_path(fs, item.path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if item.content is not None:
            destination.write_bytes(item.content.encode())
        elif (sha256 := blobs.get(input_role(i))) is not None:
            storage.copy_to_path(sha256, destination)
        elif (where := external.get(str(i))) is not None:
            download_object(where["bucket"], where["key"], destination)
        else:
            raise StorageError(f"inputs[{i}]: its file is gone (deleted after the task was submitted?)")


def _files_under(fs: Path, directory: str, depth: int | None = None) -> list[tuple[Path, str]]:
    """(host path, container path) of the regular files under a container directory, found without
    following a link (one could lead anywhere on the host), at most `depth` levels down."""
    top = MountPlan.host_path(fs, directory)
    found = []
    for current, subdirectories, names in os.walk(top, followlinks=False):
        here = Path(current)
        if depth is not None and len(here.relative_to(top).parts) >= depth - 1:
            subdirectories.clear()
        for name in names:
            path = here / name
            if stat.S_ISREG(path.lstat().st_mode):
                found.append((path, "/" + path.relative_to(fs).as_posix()))
    return sorted(found)


def _unique(name: str, used: set[str]) -> str:
    """`name`, or `name-2`, `name-3`…: each stored output of a role has its own name."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        stem, dot, suffix = name.partition(".")
        candidate = f"{stem}-{n}{dot}{suffix}"
    used.add(candidate)
    return candidate


def _collect(task: TaskIn, plan: MountPlan, fs: Path) -> tuple[list[OutputBlob], list[dict[str, str]]]:
    """Store every output; the log entries say at which container path each stored file was."""
    found: list[tuple[str, str, Path, str]] = []  # (role, file name, host path, container path)
    for i, output in enumerate(task.outputs or ()):
        role = output.name or f"outputs[{i}]"
        host = plan.host_path(fs, output.path)
        if WILDCARD.search(output.path):
            prefix = output.path_prefix or ""
            pattern = PurePosixPath(output.path)
            start = static_dir(output.path)
            depth = len(pattern.parts) - len(PurePosixPath(start).parts)
            for path, container in _files_under(fs, start, depth):
                if PurePosixPath(container).match(output.path):
                    relative = container.removeprefix(prefix).lstrip("/")
                    name = "_".join(filter(None, [output.url, relative.replace("/", "_")]))
                    found.append((role, name, path, container))
        elif output.type is FileType.DIRECTORY:
            if host.is_symlink() or not host.is_dir():
                raise OutputProblem(f"outputs[{i}]: directory {output.path} was not created")
            for path, container in _files_under(fs, output.path):
                relative = container.removeprefix(output.path.rstrip("/") + "/")
                found.append((role, "_".join(filter(None, [output.url, relative.replace("/", "_")])), path, container))
        else:
            if host.is_symlink() or not host.is_file():
                raise OutputProblem(f"outputs[{i}]: file {output.path} was not created (or is not a regular file)")
            found.append((role, output.url or Path(output.path).name, host, output.path))
    limits = get_settings()
    if len(found) > limits.tes.max_output_files:
        raise OutputProblem(f"the task produced {len(found)} output files; the limit is {limits.tes.max_output_files}")
    for role, _name, path, container in found:
        if path.is_symlink() or not _inside(fs, path):
            raise OutputProblem(f"output {role!r}: {container} is a link that leads outside the task's directories")
    total, limit = sum(path.stat().st_size for _, _, path, _ in found), limits.quota.output_limit(TES_TOOL)
    if total > limit:
        raise OutputProblem(f"the task's outputs are {total} bytes; the limit is {limit} bytes (EMGAPI_QUOTA__*)")
    storage = get_storage()
    blobs, entries = [], []
    used: dict[str, set[str]] = {}
    for role, name, path, container in found:
        info = storage.put_path(path)
        name = _unique(actions.clean_file_name(name), used.setdefault(role, set()))
        blobs.append(OutputBlob(role=role, name=name, sha256=info.sha256, size=info.size))
        entries.append({"role": role, "name": name, "path": container})
    return blobs, entries


def _argv(executor: ExecutorIn) -> list[str]:
    if executor.stdin:  # the one case that needs a shell in the image; the path is an argument, never code
        return ["/bin/sh", "-c", 'exec "$@" < "$0"', executor.stdin, *executor.command]
    return list(executor.command)


class TesTaskRun:
    """One attempt of one TES task, on the calculation run's backend, through its `_end` and `_wait`."""

    def __init__(self, run: CalculationRun, calc: Calculation, base: Path) -> None:
        self.run, self.calc, self.base = run, calc, base
        self.fs = base / "fs"
        self.stdout_path, self.stderr_path = log_paths(calc.id, run.attempt)
        self.usage: dict[str, float] = {}
        self.last_exit: int | None = None

    async def execute(self) -> CalculationState:
        run = self.run
        try:
            run.backend = run.backend_for(run.backend_name)
        except BackendUnavailable as exc:
            return await run._end(AttemptEnd.BACKEND_UNAVAILABLE, str(exc))
        tes = await db(TesTask.objects.get)(calculation_id=self.calc.id)
        task = TaskIn.model_validate(tes.spec["task"])
        plan = MountPlan(tuple(tes.spec["mounts"]))
        resources: dict[str, int] = tes.spec["resources"]
        blobs = {role: sha256 for role, _name, sha256 in await db(input_blobs)(self.calc.id)}
        try:
            await asyncio.to_thread(_stage, task, plan, self.fs, blobs, tes.spec.get("external_inputs", {}),
                                    tes.spec.get("unreachable", []))  # fmt: skip
        except UnreachableLocation as exc:
            return await run._end(AttemptEnd.LOCATION_UNREACHABLE, f"cannot run this task here: {exc}")
        except (StorageError, OSError) as exc:
            return await run._end(AttemptEnd.STORAGE_FAILED, f"could not place the inputs: {exc}")
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
    ) -> CalculationState | None:
        """Run executor `index`; a state if the attempt ended with it, None to go on."""
        run, calc = self.run, self.calc
        if get_inflight_watcher().is_canceling(calc.id) or await run._current_state() == S.CANCELING:
            return await self._end(AttemptEnd.CANCELED, f"canceled before executor {index} started")
        argv = _argv(executor)
        job = JobSpec(
            argv=argv, workdir=self.fs, stdout_path=self.stdout_path, stderr_path=self.stderr_path,
            cpus=resources["cpus"], memory_mb=resources["memory_mb"],
            time_limit_seconds=resources["time_limit_seconds"],
            env=dict(executor.env or {}), name=f"calc-{calc.id}-a{run.attempt}-e{index}", image=executor.image,
            mounts=mounts, container_workdir=executor.workdir,
        )  # fmt: skip
        starts = (self.stdout_path.stat().st_size, self.stderr_path.stat().st_size)
        started = _now()
        try:
            handle = await run.backend.submit(job)
        except BackendUnavailable as exc:
            return await self._end(AttemptEnd.BACKEND_UNAVAILABLE, f"executor {index}: {run.backend.kind}: {exc}")
        try:
            if index == 0:
                await db(actions.do_mark_running)(
                    calc.id, run.attempt, job_id=handle.job_id, argv=argv, executable=None,
                    image=handle.details.get("image") or None, image_digest=handle.details.get("image_digest") or None,
                    job_details=handle.details,
                )  # fmt: skip
            else:
                await db(do_record_tes_log)(calc.id, run.attempt, job_id=handle.job_id)
        except InvalidTransition:
            await run.backend.cancel(handle, get_settings().worker.kill_grace_seconds)
            return await self._end(AttemptEnd.CANCELED, "canceled while starting")
        run.logger.info("TES task %s: executor %s (%s) is %s job %s", calc.id, index, executor.image,
                        run.backend.kind, handle.job_id)  # fmt: skip
        state = await run._wait(handle)
        await self._record(index, executor, state, starts, started)
        self.last_exit = state.exit_code
        for name, value in state.resource_usage.items():
            self.usage[name] = self.usage.get(name, 0.0) + value
        if state.status is JobStatus.SUCCEEDED or (state.status is JobStatus.FAILED and executor.ignore_error):
            return None
        if state.status is JobStatus.CANCELED:
            return await self._end(AttemptEnd.CANCELED, "canceled; executor stopped")
        end = JOB_ENDS[state.status, state.limit if state.status is JobStatus.FAILED else None]
        tail = (await asyncio.to_thread(_segment, self.stderr_path, starts[1], 4000))[0].strip()
        message = f"executor {index} ({executor.image}) {state.message}" + (f":\n{tail}" if tail else "")
        return await self._end(end, message)

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
                    await asyncio.to_thread(_copy_segment, source, start, end, self.fs, target)
                except (OSError, OutputProblem) as exc:
                    notes.append(f"executor {index}: could not write its {name} to {target}: {exc}")
        log = {"start_time": started, "end_time": _now(), "exit_code": state.exit_code, "stdout": stdout,
               "stderr": stderr}  # fmt: skip
        try:
            await db(do_record_tes_log)(
                self.calc.id, self.run.attempt, executor=log, system_log="\n".join(notes) or None
            )
        except InvalidTransition:
            pass  # superseded: its end is recorded (or refused) by `_end`

    async def _finish(self, task: TaskIn, plan: MountPlan) -> CalculationState:
        try:
            outputs, entries = await asyncio.to_thread(_collect, task, plan, self.fs)
        except OutputProblem as exc:
            return await self._end(AttemptEnd.OUTPUTS_INVALID, str(exc))
        except StorageError as exc:
            return await self._end(AttemptEnd.STORAGE_FAILED, f"could not store outputs: {exc}")
        try:
            await db(do_record_tes_log)(self.calc.id, self.run.attempt, outputs=entries)
        except InvalidTransition:
            pass
        final = await self._end(AttemptEnd.SUCCEEDED, "", outputs)
        if final == S.COMPLETE:
            await asyncio.to_thread(shutil.rmtree, self.base, True)
        return final

    async def _end(self, end: AttemptEnd, message: str, outputs: list[OutputBlob] | None = None) -> CalculationState:
        try:
            stdout_sha, stderr_sha = await asyncio.to_thread(store_logs, self.calc.id, self.run.attempt)
        except StorageError:
            stdout_sha = stderr_sha = None
        outcome = JobOutcome(self.last_exit, self.usage, stdout_sha, stderr_sha)
        return await self.run._end(end, message, outcome, outputs)
