"""Execution backends: where a tool's process actually runs (design brief §5)."""

from functools import lru_cache

from workflows.backends.base import (
    BackendUnavailable,
    ExecutionBackend,
    JobHandle,
    JobLimit,
    JobSpec,
    JobState,
    JobStatus,
)
from workflows.backends.container import ContainerBackend
from workflows.backends.local import LocalBackend
from workflows.backends.slurm import SlurmBackend

BACKENDS: dict[str, type[ExecutionBackend]] = {
    LocalBackend.kind: LocalBackend,
    ContainerBackend.kind: ContainerBackend,
    SlurmBackend.kind: SlurmBackend,
}


@lru_cache
def get_backend(kind: str) -> ExecutionBackend:
    """One instance per backend per process: it tracks every job this worker waits on."""
    try:
        return BACKENDS[kind]()
    except KeyError:
        raise BackendUnavailable(f"unknown backend {kind!r} (known: {', '.join(BACKENDS)})") from None


__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "ContainerBackend",
    "ExecutionBackend",
    "JobHandle",
    "JobLimit",
    "JobSpec",
    "JobState",
    "JobStatus",
    "LocalBackend",
    "SlurmBackend",
    "get_backend",
]
