"""The one protocol every execution backend implements, and the values it exchanges.

Methods are async: a worker waits on thousands of jobs in one event loop, so waiting must cost
a coroutine, never a thread or a process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class JobSpec:
    argv: list[str]
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    cpus: int = 1
    memory_mb: int = 1024
    time_limit_seconds: int = 3600
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobHandle:
    backend: str
    job_id: str
    host: str


class JobStatus(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # the tool exited non-zero or was killed for exceeding a limit
    CANCELED = "CANCELED"
    LOST = "LOST"  # the backend no longer knows the job: a platform fault


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    exit_code: int | None = None
    message: str = ""
    resource_usage: dict[str, float] = field(default_factory=dict)

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
