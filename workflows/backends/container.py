"""ContainerBackend: runs a tool in its own container through the Docker API (docker-py).

The same code serves a Docker engine and Podman's compatible socket (`DOCKER_HOST`). Each job is
one container of the tool's image with the isolation `isolation.ContainerRun` defines (limits, no
network unless the tool declares it, read-only root, no capabilities, inputs mounted read-only and
the working directory read-write, each at its host path, so the argv the tool spec built runs
unchanged). Two `/bin/sh` shells start the tool (`shells.in_container`: it is neither the
container's PID 1 nor PID 1's child) and send its output to the attempt's log files, which are live
while it runs (the images are Debian-based; a shell is there).

What the tool used is measured in the container, since an engine says nothing of an exited
container but its times: PID 1 writes its children's CPU times and the container cgroup's peak memory
to the attempt's usage file once the tool has ended (`shells.usage_report`, bound at
`isolation.USAGE_IN_CONTAINER`), and the final state reads them with the engine's start and finish
times (`wall_seconds`). The memory limit is also the memory+swap limit, so a tool over it is killed
by the kernel (`OOMKilled`), never slowed into swap.

Waiting costs no thread per job: one thread follows the engine's event stream and wakes the job
whose container died; an inspection every `poll_seconds` is the safety net for a missed event.
docker-py is synchronous, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

from emgapiv2.config import get_settings
from workflows.backends.base import BackendUnavailable, JobHandle, JobLimit, JobSpec, JobState, JobStatus, filtered
from workflows.backends.isolation import USAGE_IN_CONTAINER, ContainerRun
from workflows.backends.shells import USAGE_FILE, oom_killed, read_usage, signal_in, signal_name

logger = logging.getLogger(__name__)

RUNNING_STATUSES = {"created", "running", "restarting", "paused"}
# what a calculation's error may say of an engine's refusal (see base.filtered): Docker's and
# Podman's answers are matched, never quoted; the first match is said
ENGINE_VOCABULARY = (
    ("mounting", "a directory of the task could not be mounted in the container"),
    ("executable file", "the command is not in the image (the platform starts it with /bin/sh)"),
    ("exec:", "the command is not in the image (the platform starts it with /bin/sh)"),
    ("no such image", "the image is not on the container engine"),
    ("image not known", "the image is not on the container engine"),
    ("is already in use", "a container of that name already exists"),
    ("permission denied", "permission denied"),
    ("no space left", "the engine's host has no disk space left"),
    ("memory", "the engine could not give the container its memory"),
)


@dataclass
class _Job:
    time_limit_seconds: int
    memory_mb: int
    started_monotonic: float = field(default_factory=time.monotonic)
    last_inspected: float = field(default_factory=time.monotonic)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    canceled: bool = False
    timed_out: bool = False


def _timestamp(value: str) -> datetime:
    # engines report nanoseconds; Python parses at most microseconds
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))


def _wall_seconds(state: dict[str, Any]) -> float | None:
    try:
        started, finished = _timestamp(state["StartedAt"]), _timestamp(state["FinishedAt"])
    except (KeyError, ValueError):
        return None
    # Podman may stamp a container that exits at once as finished a few µs before it started
    return round(max((finished - started).total_seconds(), 0.0), 3)


def _usage_file(attrs: dict[str, Any]) -> Path | None:
    """The usage file bound in the container, where its PID 1 recorded what the tool used (found by
    the container's own mounts, so a container another worker process started is read too)."""
    for mount in attrs.get("Mounts") or ():
        if mount.get("Destination") == USAGE_IN_CONTAINER and mount.get("Source"):
            return Path(mount["Source"])
    return None


def container_options(spec: JobSpec) -> dict[str, Any]:
    """docker-py `containers.create` options for one job."""
    return ContainerRun.for_job(spec).docker_py_options()


class ContainerBackend:
    kind = "container"

    def __init__(self, docker_host: str | None = None, poll_seconds: float | None = None) -> None:
        settings = get_settings().container
        self._docker_host = docker_host or settings.docker_host
        self._poll_seconds = poll_seconds if poll_seconds is not None else settings.poll_seconds
        self._client: Any = None
        self._jobs: dict[str, _Job] = {}
        self._events_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host = socket.gethostname()

    # --- the engine ------------------------------------------------------------------------

    def _docker(self) -> Any:
        if self._client is None:
            try:
                if self._docker_host:
                    self._client = docker.DockerClient(base_url=self._docker_host, timeout=60)
                else:
                    self._client = docker.from_env(timeout=60)
                self._client.ping()
            except docker.errors.DockerException as exc:
                self._client = None
                where = self._docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
                raise BackendUnavailable(filtered(f"cannot reach the container engine at {where}", exc, ())) from None
        return self._client

    def _follow_events(self) -> None:
        """Thread: wake the job whose container died. Reconnects after a broken stream."""
        pause = 1.0
        while True:
            try:
                # filtered here, not by the engine: Podman ignores an "event" filter on this API
                for event in self._docker().events(decode=True, filters={"type": "container"}):
                    if (event.get("Action") or event.get("status")) != "die":
                        continue
                    container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
                    if self._loop is not None and container_id in self._jobs:
                        self._loop.call_soon_threadsafe(self._wake, container_id)
                    pause = 1.0
            except Exception as exc:
                # the periodic inspection still finds every exit meanwhile, only later
                logger.warning("container event stream broke (%s); reconnecting in %.0f s", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)

    def _wake(self, container_id: str) -> None:
        if job := self._jobs.get(container_id):
            job.exited.set()

    def _ensure_events(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._events_thread is None or not self._events_thread.is_alive():
            self._events_thread = threading.Thread(target=self._follow_events, name="container-events", daemon=True)
            self._events_thread.start()

    # --- the protocol ----------------------------------------------------------------------

    def _create_and_start(self, spec: JobSpec) -> tuple[str, dict[str, str]]:
        options = container_options(spec)  # first: it refuses an image name that is not a reference
        client = self._docker()
        try:
            image = client.images.get(options["image"])
        except docker.errors.ImageNotFound:
            raise BackendUnavailable(
                f"image {options['image']} is not on the container engine; build it with `task images`"
            ) from None
        except Exception as exc:  # docker-py raises a bare Exception quoting the engine's whole answer
            raise BackendUnavailable(filtered("the container engine could not inspect the image", exc, ())) from None
        for path in (spec.stdout_path, spec.stderr_path):
            path.touch()  # bind-mounted files must exist
        (spec.job_dir / USAGE_FILE).write_text("")  # and this one empty: an earlier executor's is not this one's
        try:
            container = client.containers.create(**options)
        except docker.errors.APIError as exc:
            raise BackendUnavailable(filtered("could not create the container", exc, ENGINE_VOCABULARY)) from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            raise BackendUnavailable(filtered("could not start the container", exc, ENGINE_VOCABULARY)) from None
        # the image's own content digest (its id): engines agree on it, whereas a "repo digest"
        # exists only for pulled images (and Podman invents one for local builds)
        return container.id, {"image": spec.image or "", "image_digest": image.id}

    async def submit(self, spec: JobSpec) -> JobHandle:
        container_id, details = await asyncio.to_thread(self._create_and_start, spec)
        self._ensure_events()  # the engine answered: follow its events
        self._jobs[container_id] = _Job(spec.time_limit_seconds, spec.memory_mb)
        return JobHandle(backend=self.kind, job_id=container_id, host=self._host, details=details)

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self._docker().api.inspect_container(container_id)
            return attrs
        except docker.errors.NotFound:
            return None

    def _remove(self, container_id: str) -> None:
        try:
            self._docker().api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass

    def _final_state(self, job: _Job | None, attrs: dict[str, Any]) -> JobState:
        state = attrs.get("State", {})
        exit_code = int(state.get("ExitCode", -1))
        usage_file = _usage_file(attrs)
        usage = read_usage(usage_file) if usage_file else {}
        if (wall := _wall_seconds(state)) is not None:
            usage["wall_seconds"] = wall
        if job is not None and job.canceled:
            return JobState(JobStatus.CANCELED, exit_code, "canceled", usage)
        if job is not None and job.timed_out:
            message = f"time limit of {job.time_limit_seconds} s exceeded"
            return JobState(JobStatus.FAILED, exit_code, message, usage, limit=JobLimit.TIME)
        # the engine's flag, or the kernel's count in the container's cgroup (Podman sets no flag)
        if state.get("OOMKilled") or (exit_code != 0 and usage_file and oom_killed(usage_file)):
            limit = f" of {job.memory_mb} MB" if job else ""
            message = f"killed: out of memory (limit{limit})"
            return JobState(JobStatus.FAILED, exit_code, message, usage, limit=JobLimit.MEMORY)
        if state.get("Error"):
            return JobState(
                JobStatus.FAILED, exit_code, filtered("could not run", state["Error"], ENGINE_VOCABULARY), usage
            )
        if exit_code == 0:
            return JobState(JobStatus.SUCCEEDED, 0, "", usage)
        if (number := signal_in(exit_code)) is not None:  # as the shells that ran the tool reported it
            return JobState(JobStatus.FAILED, exit_code, f"killed by {signal_name(number)}", usage)
        return JobState(JobStatus.FAILED, exit_code, f"exited with code {exit_code}", usage)

    async def poll(self, handle: JobHandle) -> JobState:
        job = self._jobs.get(handle.job_id)
        attrs = await asyncio.to_thread(self._inspect, handle.job_id)
        if job is not None:
            job.last_inspected = time.monotonic()
        if attrs is None:
            self._jobs.pop(handle.job_id, None)
            return JobState(JobStatus.LOST, message=f"container {handle.job_id[:12]} no longer exists")
        if attrs.get("State", {}).get("Status") in RUNNING_STATUSES:
            if job is not None and time.monotonic() - job.started_monotonic > job.time_limit_seconds:
                job.timed_out = True
                await asyncio.to_thread(self._kill, handle.job_id)
                return await self.poll(handle)
            return JobState(JobStatus.RUNNING)
        final = self._final_state(job, attrs)
        await asyncio.to_thread(self._remove, handle.job_id)
        self._jobs.pop(handle.job_id, None)
        return final

    def _kill(self, container_id: str) -> None:
        try:
            self._docker().api.kill(container_id)
            self._docker().api.wait(container_id, timeout=30)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it is not running any more
                raise

    async def wait(self, handle: JobHandle, timeout_seconds: float) -> JobState:
        job = self._jobs.get(handle.job_id)
        if job is None:
            return await self.poll(handle)  # a job this process did not start: ask the engine
        now = time.monotonic()
        until_limit = job.time_limit_seconds - (now - job.started_monotonic)
        until_inspection = self._poll_seconds - (now - job.last_inspected)
        try:
            await asyncio.wait_for(job.exited.wait(), max(min(timeout_seconds, until_limit, until_inspection), 0))
        except TimeoutError:
            pass
        now = time.monotonic()
        due = (
            job.exited.is_set()
            or now - job.started_monotonic > job.time_limit_seconds
            or now - job.last_inspected >= self._poll_seconds
        )
        return await self.poll(handle) if due else JobState(JobStatus.RUNNING)

    def _stop(self, container_id: str, grace_seconds: float) -> None:
        try:
            self._docker().api.stop(container_id, timeout=max(int(grace_seconds), 1))
        except docker.errors.NotFound:
            pass

    async def cancel(self, handle: JobHandle, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period (the engine's own stop); the container is
        removed by the poll that records its final state."""
        job = self._jobs.get(handle.job_id)
        if job is not None:
            job.canceled = True
        await asyncio.to_thread(self._stop, handle.job_id, grace_seconds)
