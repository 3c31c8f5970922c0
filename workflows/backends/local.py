"""LocalBackend: runs a tool as a child process of the worker.

Each job gets its own process group (so cancel kills the tool and everything it spawned), its
working directory, stdout/stderr redirected to files (a child holding the worker's pipes would
hide a worker crash), its own cgroup (`job_cgroups.py`: memory and CPUs enforced, an out-of-memory
kill told apart, its usage measured), a CPU-time limit through `prlimit`, inside the bubblewrap
sandbox of `sandbox.py` (only its own directories visible, no network, an unprivileged user).
The exit is observed through a pidfd in the event loop: waiting costs no thread. Needs Linux ≥ 5.3.

The tool's program is looked up before it is started (on the job's PATH, or as a path relative to
its working directory): a missing program is an OSError at submit, whether `prlimit` wraps it or
not (wrapped, it would only be a failed job with prlimit's exit code).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from emgapiv2.config import get_settings
from workflows.backends.base import BackendUnavailable, JobHandle, JobLimit, JobSpec, JobState, JobStatus
from workflows.backends.job_cgroups import JobCgroup, JobCgroups
from workflows.backends.sandbox import Sandbox
from workflows.backends.shells import signal_in, signal_name
from workflows.identity import boot_id, process_start_ticks

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    process: subprocess.Popen[bytes]
    started_monotonic: float
    time_limit_seconds: int
    memory_mb: int
    cgroup: JobCgroup | None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: JobState = field(default_factory=lambda: JobState(JobStatus.RUNNING))
    canceled: bool = False
    timed_out: bool = False


def _check_program(program: str, search_path: str, workdir: Path) -> None:
    """Raise the OSError that exec would if `program` cannot be started: a path (absolute, or
    relative to the working directory) must be an executable file; a bare name must be found on
    `search_path`, the job's PATH."""
    if os.sep in program:
        candidate = workdir / program  # an absolute program replaces the working directory
        if not candidate.exists():
            raise FileNotFoundError(errno.ENOENT, "no such program", program)
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            raise PermissionError(errno.EACCES, "the program is not an executable file", program)
    elif shutil.which(program, path=search_path) is None:
        # (the PATH itself stays out of the message: it ends up in the calculation's user-visible error)
        raise FileNotFoundError(errno.ENOENT, "no such program on the job's PATH", program)


class LocalBackend:
    kind = "local"

    def __init__(
        self, sandbox: Sandbox | None | Literal["settings"] = "settings", cgroups: JobCgroups | None = None
    ) -> None:
        self._jobs: dict[str, _Job] = {}
        self._host = socket.gethostname()
        self._prlimit = shutil.which("prlimit")
        settings = get_settings().execution
        if sandbox == "settings":
            sandbox = Sandbox.from_settings(settings.sandbox_user, allow_unsandboxed=settings.allow_unsandboxed)
        self._sandbox = sandbox
        if cgroups is None:
            cgroups = JobCgroups.detect(favor=settings.cgroups_favor_moves) if settings.cgroups else JobCgroups([])
        self._cgroups = cgroups

    def _limited_argv(self, spec: JobSpec) -> list[str]:
        if not self._prlimit:
            return spec.argv
        cpu_seconds = spec.time_limit_seconds * max(spec.cpus, 1)
        if self._cgroups.available:  # the cgroup holds the memory: an address-space limit would fail it first
            return [self._prlimit, f"--cpu={cpu_seconds}", "--", *spec.argv]
        memory_bytes = spec.memory_mb * 1024 * 1024
        return [self._prlimit, f"--as={memory_bytes}", f"--cpu={cpu_seconds}", "--", *spec.argv]

    async def submit(self, spec: JobSpec) -> JobHandle:
        if spec.gpus:  # refused at submission (calculations/resources.py); never silently without them
            raise BackendUnavailable("the local backend cannot give GPUs")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(spec.workdir)}
        env |= {"OMP_NUM_THREADS": str(spec.cpus), **spec.env}
        _check_program(spec.argv[0], env["PATH"], spec.workdir)
        argv = self._limited_argv(spec)
        if self._sandbox is not None:
            self._sandbox.prepare(spec)
            argv = self._sandbox.wrap(spec, argv)
        try:
            cgroup = self._cgroups.create(memory_mb=spec.memory_mb, cpus=spec.cpus) if self._cgroups.available else None
        except OSError as exc:
            raise BackendUnavailable(f"could not make the job's cgroup ({exc.strerror})") from None
        if cgroup is not None:
            argv = cgroup.join_argv(argv)
        try:
            with spec.stdout_path.open("wb") as stdout, spec.stderr_path.open("wb") as stderr:
                process = subprocess.Popen(  # noqa: S603 - an argv list, never a shell
                    argv,
                    cwd=spec.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    env=env,
                    start_new_session=True,  # own process group: cancel kills the whole tree
                    close_fds=True,
                    # the sandbox's mount points must be traversable by its unprivileged user (the
                    # worker's own umask is 077); the host's attempt directory stays private
                    umask=0o022 if self._sandbox is not None else -1,
                )
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        job = _Job(process, time.monotonic(), spec.time_limit_seconds, spec.memory_mb, cgroup)
        job_id = str(process.pid)
        self._jobs[job_id] = job
        self._watch(job)
        # with the pid (its process group), these recognise the very process later: a worker that
        # outlives a lost one kills its tools only if they are still these processes
        details = {"boot_id": boot_id(), "start_ticks": process_start_ticks(process.pid)}
        return JobHandle(backend=self.kind, job_id=job_id, host=self._host, details=details)

    def _watch(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(job.process.pid)

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(job.process.pid, 0)
            job.process.returncode = os.waitstatus_to_exitcode(status)
            job.state = self._final_state(job, status)
            job.done.set()

        loop.add_reader(pidfd, on_exit)

    def _final_state(self, job: _Job, status: int) -> JobState:
        # the tool's own usage is its cgroup's: the rusage of what the worker started is the sandbox's
        # (and its peak memory, that of the worker it was forked from)
        resource_usage: dict[str, float] = {"wall_seconds": round(time.monotonic() - job.started_monotonic, 3)}
        out_of_memory = False
        if job.cgroup is not None:
            resource_usage |= job.cgroup.usage()
            out_of_memory = job.cgroup.oom_killed()
            self._remove_cgroup(job.cgroup)
        # in the sandbox, the shell that runs the tool reports its death by signal N as 128 + N
        number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        if self._sandbox is not None and os.WIFEXITED(status):
            number = signal_in(os.WEXITSTATUS(status)) or 0
        if number:
            exit_code = 128 + number
            if job.canceled:
                return JobState(JobStatus.CANCELED, exit_code, "canceled", resource_usage)
            if job.timed_out:
                message, limit = f"time limit of {job.time_limit_seconds} s exceeded", JobLimit.TIME
            elif out_of_memory:
                message, limit = f"killed: out of memory (limit of {job.memory_mb} MB)", JobLimit.MEMORY
            elif number == signal.SIGXCPU:
                message, limit = "CPU time limit exceeded", JobLimit.TIME
            else:  # (prlimit's address-space limit makes allocations fail: the tool reports it itself)
                message, limit = f"killed by {signal_name(number)}", None
            return JobState(JobStatus.FAILED, exit_code, message, resource_usage, limit=limit)
        exit_code = os.WEXITSTATUS(status)
        if job.canceled:
            return JobState(JobStatus.CANCELED, exit_code, "canceled", resource_usage)
        if exit_code == 0:
            return JobState(JobStatus.SUCCEEDED, 0, "", resource_usage)
        if out_of_memory:  # one of the tool's processes was killed for it, and the tool gave up
            message = (
                f"exited with code {exit_code} after a process was killed: out of memory (limit of {job.memory_mb} MB)"
            )
            return JobState(JobStatus.FAILED, exit_code, message, resource_usage, limit=JobLimit.MEMORY)
        return JobState(JobStatus.FAILED, exit_code, f"exited with code {exit_code}", resource_usage)

    @staticmethod
    def _remove_cgroup(cgroup: JobCgroup, tries: int = 50) -> None:
        if not cgroup.remove():
            if tries:
                asyncio.get_running_loop().call_later(0.1, LocalBackend._remove_cgroup, cgroup, tries - 1)
            else:
                logger.warning("could not remove the job cgroups %s", sorted(map(str, cgroup.directories.values())))

    def _job(self, handle: JobHandle) -> _Job | None:
        return self._jobs.get(handle.job_id)

    async def poll(self, handle: JobHandle) -> JobState:
        job = self._job(handle)
        if job is None:
            return JobState(JobStatus.LOST, message=f"process {handle.job_id} is unknown to this worker")
        if not job.done.is_set() and time.monotonic() - job.started_monotonic > job.time_limit_seconds:
            job.timed_out = True
            self._signal(job, signal.SIGKILL)
            await job.done.wait()  # SIGKILL cannot be ignored: the exit follows at once
        if job.done.is_set():
            self._jobs.pop(handle.job_id, None)
        return job.state

    async def wait(self, handle: JobHandle, timeout_seconds: float) -> JobState:
        job = self._job(handle)
        if job is not None and not job.done.is_set():
            remaining = job.time_limit_seconds - (time.monotonic() - job.started_monotonic)
            try:
                await asyncio.wait_for(job.done.wait(), max(min(timeout_seconds, remaining), 0))
            except TimeoutError:
                pass
        return await self.poll(handle)

    @staticmethod
    def _signal(job: _Job, number: int) -> None:
        try:
            os.killpg(job.process.pid, number)
        except ProcessLookupError:
            pass

    async def cancel(self, handle: JobHandle, grace_seconds: float) -> None:
        job = self._job(handle)
        if job is None or job.done.is_set():
            return
        job.canceled = True
        self._signal(job, signal.SIGTERM)
        try:
            await asyncio.wait_for(job.done.wait(), grace_seconds)
        except TimeoutError:
            self._signal(job, signal.SIGKILL)
            await job.done.wait()
        # the tool may have left children in its group: they go too
        self._signal(job, signal.SIGKILL)
