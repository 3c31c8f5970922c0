"""SlurmBackend: each calculation attempt is one Slurm batch job.

The batch script holds only the tool's command (its argv, each word quoted with `shlex.quote`) and
its environment (names by their grammar, values quoted; with a container runtime, only as the
container's `--env` words, never the node shell's), and records the exit code in the attempt's
directory; every option goes to `sbatch` as an argv word: resources (`--cpus-per-task`, `--mem`,
`--time`), the job name `calc-<id>-a<attempt>`, and stdout/stderr paths in the attempt's directory,
so logs are live while the job runs. The job may run the tool's container
(`settings.slurm.container_runtime`).

Waiting is one poller per worker process: a single `squeue` call every `poll_seconds` covers every
job the worker waits on, and each waiting calculation is a coroutine blocked on an event, so
thousands of jobs in flight cost a few kilobytes each. A job missing from `squeue` is not taken as
a success: its final state comes from the exit-code file the script wrote, then `scontrol`, then
(with accounting) `sacct` as text (its JSON misreports exit codes on Slurm 22.05); with none of
them it is LOST. A job cancelled from outside the platform is reported as such.

A job killed for exceeding its `--mem` (the cluster must enforce it; see deployment/README.md) is
read as `JobLimit.MEMORY`: it ends OUT_OF_MEMORY under task/cgroup, and FAILED by SIGKILL with
slurmstepd's "Exceeded job memory limit" on its stderr under jobacct_gather's OverMemoryKill. What the
tool used is measured in the job: after the tool, the batch script writes its children's CPU times
and the peak memory of the job's own cgroup to the attempt's usage file (`shells.usage_report`; in
the tool's container, its PID 1 does, as on the container backend); `wall_seconds` is Slurm's
RunTime. Where the final state comes from `sacct` anyway, the same call gives the batch step's
MaxRSS, UserCPU and SystemCPU for what the file lacks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from calculations.names import is_env_name
from emgapiv2.config import get_settings
from workflows.backends.base import BackendUnavailable, JobHandle, JobLimit, JobSpec, JobState, JobStatus, filtered
from workflows.backends.isolation import ContainerRun, tool_environment
from workflows.backends.shells import (
    USAGE_FILE,
    oom_killed,
    read_usage,
    run_as_child,
    signal_in,
    signal_name,
    usage_report,
)

logger = logging.getLogger(__name__)

# Slurm job states in which the job has not ended yet
ACTIVE = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
}  # fmt: skip
EXIT_FILE = "exit_code"
SCRIPT_FILE = "job.sh"
MISSING_POLLS_BEFORE_FINAL = 2  # a job absent from squeue this many times in a row has ended
COMMAND_TIMEOUT_SECONDS = 60
# what a calculation's error may say of sbatch's refusal (see base.filtered): its stderr is matched,
# never quoted; the first match is said
SLURM_VOCABULARY = (
    ("invalid partition", "invalid partition (EMGAPI_SLURM__PARTITION)"),
    ("invalid account", "invalid account (EMGAPI_SLURM__ACCOUNT)"),
    ("invalid qos", "invalid QOS"),
    ("policy", "the account's or QOS's limits refuse the job"),
    ("time limit", "the job's time limit exceeds what the partition allows"),
    ("node configuration is not available", "no node has the CPUs and memory the job asks for"),
    ("memory specification", "no node has the memory the job asks for"),
    ("more processors requested", "the job asks for more CPUs than the partition allows"),
    ("unable to contact slurm controller", "the Slurm controller did not answer"),
    ("did not answer within", "the Slurm controller did not answer in time"),
    ("access denied", "Slurm denied access"),
)


class SlurmCommandError(Exception):
    pass


@dataclass
class _Job:
    job_dir: Path | None
    time_limit_seconds: int
    memory_mb: int
    submitted_monotonic: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: JobState = field(default_factory=lambda: JobState(JobStatus.RUNNING))
    canceled: bool = False
    missing_polls: int = 0
    stderr_path: Path | None = None  # where slurmstepd says it killed the job for memory


def container_command(runtime: str, spec: JobSpec) -> tuple[list[str], list[str]]:
    """`docker run`/`podman run` with the same isolation the container backend applies, and the
    command that removes the container after it."""
    run = ContainerRun.for_job(spec)
    return run.cli_words(runtime), run.cli_remove_words(runtime)


def batch_script(
    command: list[str], spec: JobSpec, env: dict[str, str], *, then: list[str] | None = None, measure: bool = False
) -> str:
    """The job's shell script: every word of it quoted, and variable names only by their grammar
    (the API refuses others; this keeps a name that slipped past it from ever being shell code).
    `then` runs after the command, its exit code recorded, and also when the job is cancelled.
    `measure`: the script writes what the command used to the usage file (a tool run on the node;
    a container's PID 1 measures its own)."""
    if bad := [name for name in env if not is_env_name(name)]:
        raise BackendUnavailable(f"{bad[0][:80]!r} is not a variable name a job may be given")
    exit_file = spec.job_dir / EXIT_FILE
    lines = [
        "#!/bin/sh",
        f"# emgapi job {spec.name}: written by workflows/backends/slurm.py; options are on sbatch's command line",
        *(f"export {name}={shlex.quote(value)}" for name, value in env.items()),
        *([f"trap {shlex.quote(shlex.join(then) + ' >/dev/null 2>&1; exit 143')} TERM INT"] if then else []),
        shlex.join(command),
        "code=$?",
        *([usage_report(str(spec.job_dir / USAGE_FILE), cgroup="slurm-job")] if measure else []),
        *([f"{shlex.join(then)} >/dev/null 2>&1"] if then else []),
        f'echo "$code" > {shlex.quote(str(exit_file))}.tmp && mv {shlex.quote(str(exit_file))}.tmp '
        f"{shlex.quote(str(exit_file))}",
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def _read_exit_file(job_dir: Path | None) -> int | None:
    if job_dir is None:
        return None
    try:
        return int((job_dir / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


SACCT_FIELDS = "JobID,State,ExitCode,Elapsed,MaxRSS,UserCPU,SystemCPU"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _sacct_seconds(text: str) -> float | None:
    """sacct's [DD-[HH:]]MM:SS[.mmm] as seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text.strip())
    if match is None:
        return None
    days, hours, minutes = (int(part or 0) for part in match.groups()[:3])
    return round(((days * 24 + hours) * 60 + minutes) * 60 + float(match.group(4)), 3)


def sacct_usage(job: list[str], batch: list[str] | None) -> dict[str, float]:
    """The canonical usage keys from `sacct -o SACCT_FIELDS` rows: wall_seconds from the job's
    Elapsed; MaxRSS, UserCPU and SystemCPU from its batch step, where the tool ran (the job's own
    row has no MaxRSS). A field accounting left empty is left out."""
    usage: dict[str, float] = {}
    if (wall := _sacct_seconds(job[3])) is not None:
        usage["wall_seconds"] = wall
    if batch is None:
        return usage
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", batch[4].strip()):
        usage["max_rss_mb"] = round(float(match.group(1)) * _UNITS[match.group(2)] / 1048576, 3)
    for key, text in (("user_cpu_seconds", batch[5]), ("system_cpu_seconds", batch[6])):
        if (seconds := _sacct_seconds(text)) is not None:
            usage[key] = seconds
    return usage


def _memory_kill(job: _Job, state: str | None, exit_pair: tuple[int, int] | None = None) -> str:
    """Who, besides Slurm's OUT_OF_MEMORY, says the job was killed for memory, or ""."""
    if job.job_dir is not None and oom_killed(job.job_dir / USAGE_FILE):
        return "in its container"  # killed by the container's limit, which Slurm never sees
    # (the job must have died by SIGKILL too: the line alone is text a tool can print)
    killed = exit_pair is not None and exit_pair[1] == signal.SIGKILL
    if state in ("FAILED", "CANCELLED") and killed and _stepd_killed_for_memory(job.stderr_path):
        return "Slurm"  # OverMemoryKill: the job ends FAILED (22.05) or CANCELLED, by SIGKILL
    return ""


def _stepd_killed_for_memory(stderr_path: Path | None) -> bool:
    """Whether slurmstepd wrote, at the end of the job's stderr, that it killed the job for exceeding
    its memory (JobAcctGatherParams=OverMemoryKill: "slurmstepd-<node>: error: Exceeded job memory
    limit"); Slurm 22.05 then ends the job FAILED with SIGKILL, not OUT_OF_MEMORY."""
    if stderr_path is None:
        return False
    try:
        with stderr_path.open("rb") as stderr:
            stderr.seek(max(stderr.seek(0, os.SEEK_END) - 4096, 0))
            tail = stderr.read().decode(errors="replace")
    except OSError:
        return False
    return re.search(r"^slurmstepd[^:\n]*: error: Exceeded (job|step) memory limit", tail, re.MULTILINE) is not None


def _parse_exit_code(text: str) -> tuple[int, int] | None:
    """'ExitCode=7:0' (exit status : signal) from `scontrol show job -o` or sacct's column."""
    match = re.search(r"(?:ExitCode=)?\b(\d+):(\d+)\b", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


class SlurmBackend:
    kind = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        extra_args: list[str] | None = None,
        poll_seconds: float | None = None,
        container_runtime: str | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        settings = get_settings().slurm
        self.partition = partition if partition is not None else settings.partition
        self.account = account if account is not None else settings.account
        self.extra_args = extra_args if extra_args is not None else list(settings.extra_args)
        self.poll_seconds = poll_seconds if poll_seconds is not None else settings.poll_seconds
        self.container_runtime = container_runtime if container_runtime is not None else settings.container_runtime
        self.bin_dir = bin_dir or settings.bin_dir
        self._jobs: dict[str, _Job] = {}
        self._poller: asyncio.Task[None] | None = None
        self._host = socket.gethostname()

    # --- commands ---------------------------------------------------------------------------

    def _command(self, name: str) -> str:
        path = str(self.bin_dir / name) if self.bin_dir else shutil.which(name)
        if not path or not os.path.exists(path):
            raise BackendUnavailable(f"{name} not found (is Slurm's client installed, or set EMGAPI_SLURM__BIN_DIR?)")
        return path

    async def _run(self, name: str, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self._command(name), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SlurmCommandError(f"{name} did not answer within {COMMAND_TIMEOUT_SECONDS} s") from None
        if process.returncode != 0:
            message = stderr.decode(errors="replace").strip() or stdout.decode(errors="replace").strip()
            raise SlurmCommandError(f"{name} failed (exit {process.returncode}): {message}")
        return stdout.decode(errors="replace")

    def _sbatch_args(self, spec: JobSpec) -> list[str]:
        args = [
            "--parsable",
            f"--job-name={spec.name}",
            f"--output={spec.stdout_path}",
            f"--error={spec.stderr_path}",
            "--open-mode=append",  # a TES task's executors run in turn into one pair of log files
            f"--chdir={spec.workdir}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={spec.cpus}",
            f"--mem={spec.memory_mb}M",
            f"--time={max(math.ceil(spec.time_limit_seconds / 60), 1)}",
            "--export=NIL",  # the worker's environment (with its secrets) stays out of the job
        ]
        if spec.gpus:
            args.append(f"--gres=gpu:{spec.gpus}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        return [*args, *self.extra_args]

    def _job_env(self, spec: JobSpec) -> dict[str, str]:
        """The environment of the job's own shell on the node. With a container runtime the tool's
        environment goes to the container only (`--env` words of its command): a task's variables
        (PATH, LD_PRELOAD, ...) must never steer the node's shell or the runtime's CLI."""
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        if not self.container_runtime:
            return env | tool_environment(spec)
        if "DOCKER_HOST" in os.environ:
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return env

    # --- the protocol -----------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobHandle:
        if spec.mounts is not None and not self.container_runtime:
            raise BackendUnavailable(
                "a TES task's executors run in containers: set EMGAPI_SLURM__CONTAINER_RUNTIME (docker or podman)"
            )
        command, then = run_as_child(spec.argv), None
        if self.container_runtime:
            command, then = container_command(self.container_runtime, spec)
        script = spec.job_dir / SCRIPT_FILE
        script.write_text(
            batch_script(command, spec, self._job_env(spec), then=then, measure=not self.container_runtime)
        )
        (spec.job_dir / EXIT_FILE).unlink(missing_ok=True)
        (spec.job_dir / USAGE_FILE).write_text("")  # empty (a container binds it: it must exist)
        try:
            output = await self._run("sbatch", *self._sbatch_args(spec), str(script))
        except SlurmCommandError as exc:
            raise BackendUnavailable(filtered("Slurm refused the job", exc, SLURM_VOCABULARY)) from None
        job_id = output.strip().split(";")[0]
        if not job_id.isdigit():
            raise BackendUnavailable(filtered("sbatch printed no job id", output.strip(), ()))
        self._track(job_id, _Job(spec.job_dir, spec.time_limit_seconds, spec.memory_mb, stderr_path=spec.stderr_path))
        details = {"image": spec.image or ""} if self.container_runtime else {}
        return JobHandle(backend=self.kind, job_id=job_id, host=self._host, details=details)

    def _track(self, job_id: str, job: _Job) -> None:
        self._jobs[job_id] = job
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="slurm-poller")

    def _job(self, handle: JobHandle) -> _Job:
        if handle.job_id not in self._jobs:
            # a job this process did not submit (e.g. after a restart): follow it all the same
            self._track(handle.job_id, _Job(None, 0, 0))
        return self._jobs[handle.job_id]

    async def poll(self, handle: JobHandle) -> JobState:
        job = self._job(handle)
        if job.done.is_set():
            self._jobs.pop(handle.job_id, None)
        return job.state

    async def wait(self, handle: JobHandle, timeout_seconds: float) -> JobState:
        job = self._job(handle)
        try:
            await asyncio.wait_for(job.done.wait(), timeout_seconds)
        except TimeoutError:
            pass
        return await self.poll(handle)

    async def cancel(self, handle: JobHandle, grace_seconds: float) -> None:
        """scancel: SIGTERM, then Slurm's own SIGKILL after its KillWait; forced after our grace."""
        job = self._job(handle)
        if job.done.is_set():
            return
        job.canceled = True
        try:
            await self._run("scancel", handle.job_id)
            await asyncio.wait_for(job.done.wait(), grace_seconds + 2 * self.poll_seconds + 1)
        except (SlurmCommandError, TimeoutError):
            logger.warning("Slurm job %s did not end after scancel; sending SIGKILL", handle.job_id)
            try:
                await self._run("scancel", "--signal=KILL", "--full", handle.job_id)
            except SlurmCommandError as exc:
                logger.warning("scancel --signal=KILL %s: %s", handle.job_id, exc)
            await job.done.wait()

    # --- the one poller ---------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while self._jobs:
            try:
                await self._poll_once()
            except Exception:
                logger.exception("polling Slurm failed; retrying")  # never conclude anything from a failed poll
            await asyncio.sleep(self.poll_seconds)

    async def _poll_once(self) -> None:
        waiting = {job_id: job for job_id, job in self._jobs.items() if not job.done.is_set()}
        if not waiting:
            return
        output = await self._run("squeue", "--noheader", "--states=all", "--me", "--format=%i|%T")
        states: dict[str, str] = {}
        for line in output.splitlines():
            listed_id, _, listed_state = line.strip().partition("|")
            states[listed_id] = listed_state.strip()
        for job_id, job in waiting.items():
            state = states.get(job_id)
            if state in ACTIVE:
                job.missing_polls = 0
                continue
            if state is None:
                job.missing_polls += 1
                if job.missing_polls < MISSING_POLLS_BEFORE_FINAL and _read_exit_file(job.job_dir) is None:
                    continue
            job.state = await self._final_state(job_id, job, state)
            job.done.set()

    async def _details(self, job_id: str) -> str:
        """`scontrol show job` in one line; empty once Slurm has forgotten the job."""
        try:
            return await self._run("scontrol", "--oneliner", "show", "job", job_id)
        except SlurmCommandError:
            return ""

    async def _sacct(self, job_id: str) -> tuple[str, tuple[int, int] | None, dict[str, float]] | None:
        """State and exit code from accounting, as text (not --json: it misreports exit codes), and
        in the same call the batch step's usage (`sacct_usage`)."""
        try:
            output = await self._run("sacct", "-P", "-n", "-j", job_id, "-o", SACCT_FIELDS)
        except (SlurmCommandError, BackendUnavailable):
            return None
        rows = [line.split("|") for line in output.strip().splitlines() if line.count("|") == SACCT_FIELDS.count(",")]
        job = next((row for row in rows if row[0] == job_id), None)
        if job is None:
            return None
        batch = next((row for row in rows if row[0] == f"{job_id}.batch"), None)
        return job[1].split()[0], _parse_exit_code(job[2]), sacct_usage(job, batch)

    async def _final_state(self, job_id: str, job: _Job, state: str | None) -> JobState:
        details = await self._details(job_id)
        if state is None and (match := re.search(r"JobState=(\S+)", details)):
            state = match.group(1)
        exit_pair = _parse_exit_code(details)
        accounted_usage: dict[str, float] = {}
        if state is None and (accounted := await self._sacct(job_id)):
            state, exit_pair, accounted_usage = accounted
        usage: dict[str, float] = {}
        if match := re.search(r"RunTime=(?:(\d+)-)?(\d+):(\d+):(\d+)", details):
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            usage["wall_seconds"] = float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
        if job.job_dir is not None:
            usage |= read_usage(job.job_dir / USAGE_FILE)  # measured in the job: the truest figures
        usage = accounted_usage | usage
        exit_code = _read_exit_file(job.job_dir)
        if exit_code is None and exit_pair is not None:
            exit_code = exit_pair[0]
        return self._interpret(
            job_id, job, state, exit_code, exit_pair, usage, memory_kill=_memory_kill(job, state, exit_pair)
        )

    @staticmethod
    def _interpret(
        job_id: str,
        job: _Job,
        state: str | None,
        exit_code: int | None,
        exit_pair: tuple[int, int] | None,
        usage: dict[str, float],
        *,
        memory_kill: str = "",
    ) -> JobState:
        """`memory_kill`: who else said the job was killed for memory ("in its container": its
        shell's record; "Slurm": slurmstepd's words on its stderr), if it failed."""
        failed = exit_code != 0 or bool(exit_pair and exit_pair[1])
        if memory_kill and failed and not job.canceled:
            limit = f" of {job.memory_mb} MB" if job.memory_mb else ""
            message = f"killed: out of memory (limit{limit}; {memory_kill})"
            return JobState(JobStatus.FAILED, exit_code, message, usage, limit=JobLimit.MEMORY)
        if state and state.startswith("CANCELLED"):
            if job.canceled:
                return JobState(JobStatus.CANCELED, exit_code, "canceled", usage)
            return JobState(
                JobStatus.STOPPED, exit_code,
                f"Slurm job {job_id} was cancelled outside the platform (scancel or an administrator)", usage,
            )  # fmt: skip
        if job.canceled and state is None:
            return JobState(JobStatus.CANCELED, exit_code, "canceled", usage)
        if state == "TIMEOUT":
            limit = f" of {job.time_limit_seconds} s" if job.time_limit_seconds else ""
            message = f"time limit{limit} exceeded (Slurm TIMEOUT)"
            return JobState(JobStatus.FAILED, exit_code, message, usage, limit=JobLimit.TIME)
        if state == "OUT_OF_MEMORY":
            limit = f" of {job.memory_mb} MB" if job.memory_mb else ""
            message = f"killed: out of memory (limit{limit}; Slurm)"
            return JobState(JobStatus.FAILED, exit_code, message, usage, limit=JobLimit.MEMORY)
        if state in (None, "COMPLETED", "FAILED") and exit_code is not None:
            if exit_code == 0 and state != "FAILED":
                return JobState(JobStatus.SUCCEEDED, 0, "", usage)
            if exit_pair is not None and exit_pair[1] and _read_exit_file(job.job_dir) is None:
                return JobState(JobStatus.FAILED, exit_code, f"killed by {signal_name(exit_pair[1])}", usage)
            if (number := signal_in(exit_code)) is not None:  # as the shell that ran the tool reported it
                return JobState(JobStatus.FAILED, exit_code, f"killed by {signal_name(number)}", usage)
            return JobState(JobStatus.FAILED, exit_code, f"exited with code {exit_code}", usage)
        if state is None:
            return JobState(
                JobStatus.LOST, None,
                f"Slurm job {job_id} disappeared: squeue, scontrol and sacct no longer know it and it left no "
                "exit status", usage,
            )  # fmt: skip
        return JobState(JobStatus.LOST, exit_code, f"Slurm job {job_id} ended {state}", usage)
