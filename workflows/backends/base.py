"""The one protocol every execution backend implements, and the values it exchanges.

Methods are async: a worker waits on thousands of jobs in one event loop, so waiting must cost
a coroutine, never a thread or a process.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    mode: Literal["ro", "rw"]


@dataclass(frozen=True)
class JobSpec:
    argv: list[str]
    workdir: Path  # the tool's working directory; its outputs land here
    stdout_path: Path
    stderr_path: Path
    cpus: int = 1
    memory_mb: int = 1024
    time_limit_seconds: int = 3600
    gpus: int = 0  # the submission checked that this backend has them (calculations/resources.py)
    env: dict[str, str] = field(default_factory=dict)
    name: str = "job"  # names the container or Slurm job (calc-<id>-a<attempt>)
    inputs_dir: Path | None = None  # staged inputs: mounted read-only in containers
    image: str | None = None  # the tool's container image
    network: bool = False  # containers get no network unless the tool declares it
    # A GA4GH TES executor's container: these directories bound at the task's container paths
    # (instead of the working directory and inputs at their host paths), its working directory
    # there (None: the image's), and only its own environment.
    mounts: tuple[Mount, ...] | None = None
    container_workdir: str | None = None

    @property
    def job_dir(self) -> Path:
        """The attempt's directory (holds the logs): for backend files such as a batch script."""
        return self.stdout_path.parent


@dataclass(frozen=True)
class JobHandle:
    backend: str
    job_id: str
    host: str
    # what provenance should keep about where it ran, e.g. {"image": …, "image_digest": …}
    details: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


class BackendUnavailable(Exception):
    """The backend cannot take the job (engine or scheduler unreachable, image missing): a
    platform fault (SYSTEM_ERROR), unlike a tool that cannot start (EXECUTOR_ERROR)."""


def filtered(what: str, raw: object, vocabulary: Sequence[tuple[str, str]]) -> str:
    """`what` went wrong, said in a fixed vocabulary for the calculation's error (which its owner
    reads): an engine's or scheduler's own answer can quote other users' containers and jobs (names,
    command lines, mounts), so it goes to the worker's log only. `vocabulary` pairs a lowercase text
    the answer may contain with the phrase to say instead; the first that matches is said."""
    text = str(raw)
    logger.warning("%s: %s", what, text)
    lowered = text.lower()
    phrase = next((phrase for pattern, phrase in vocabulary if pattern in lowered), None)
    return f"{what}: {phrase}" if phrase else f"{what} (the reason is in the worker's log)"


class JobStatus(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # the tool exited non-zero or was killed (for exceeding a limit: see JobState.limit)
    CANCELED = "CANCELED"
    LOST = "LOST"  # the backend no longer knows the job: a platform fault (retried)
    STOPPED = "STOPPED"  # stopped from outside the platform (an operator's scancel): final, not retried


class JobLimit(enum.Enum):
    """The resource limit a FAILED job was killed for exceeding."""

    MEMORY = "memory"
    TIME = "time"


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    exit_code: int | None = None
    message: str = ""
    resource_usage: dict[str, float] = field(default_factory=dict)
    limit: JobLimit | None = None

    @property
    def is_final(self) -> bool:
        return self.status is not JobStatus.RUNNING


class ExecutionBackend(Protocol):
    kind: str

    async def submit(self, spec: JobSpec) -> JobHandle:
        """Start the job; return once it has been handed to the backend."""
        ...

    async def poll(self, handle: JobHandle) -> JobState: ...

    async def wait(self, handle: JobHandle, timeout_seconds: float) -> JobState:
        """The job's state once it is final, or after `timeout_seconds`, whichever is first."""
        ...

    async def cancel(self, handle: JobHandle, grace_seconds: float) -> None:
        """Stop the job: politely, then by force after `grace_seconds`."""
        ...
