"""Execution backends: where a tool's process actually runs (design brief §5)."""

from workflows.backends.base import ExecutionBackend, JobHandle, JobSpec, JobState, JobStatus
from workflows.backends.local import LocalBackend

BACKENDS: dict[str, type[ExecutionBackend]] = {LocalBackend.kind: LocalBackend}

__all__ = ["BACKENDS", "ExecutionBackend", "JobHandle", "JobSpec", "JobState", "JobStatus", "LocalBackend"]
