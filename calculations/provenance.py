"""The schema of `Calculation.provenance` (design brief §9); validated before every write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AttemptRecord(BaseModel):
    attempt: int
    backend: str
    host: str
    worker: str = ""  # host:pid of the worker process that ran the attempt
    job_id: str = ""  # pid, container id or Slurm job id
    job_details: dict[str, str] = {}  # what identifies the job beyond its id (a local job's boot id, start time)
    image: str | None = None
    image_digest: str | None = None
    workdir: str = ""
    argv: list[str] = []
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    resources: dict[str, int] = {}  # what this attempt was given (cpus, memory_mb, time_limit_seconds, gpus)
    resource_usage: dict[str, float] = {}
    stdout_sha256: str | None = None
    stderr_sha256: str | None = None


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str
    tool_version: str
    executable: str | None = None
    image: str | None = None  # the container image of the latest attempt, and its digest
    image_digest: str | None = None
    params: dict[str, Any]
    inputs: dict[str, str]  # role -> sha256
    input_bytes: int | None = None  # the inputs' total size, against which usage is measured (calculations/usage.py)
    outputs: dict[str, list[str]] = {}  # role -> sha256s
    # what the calculation is granted (calculations/resources.py); empty: made before grants were kept
    resources: dict[str, int] = {}
    # each limit an attempt killed for it is retried with more of: {"memory_mb": {"factor": 2, "cap": 8192}}
    escalation: dict[str, dict[str, float]] = {}
    attempts: list[AttemptRecord] = []

    def current(self, attempt: int) -> AttemptRecord:
        for record in self.attempts:
            if record.attempt == attempt:
                return record
        raise KeyError(f"no provenance for attempt {attempt}")


def update_attempt(provenance: dict[str, Any], attempt: int, **changes: Any) -> dict[str, Any]:
    """Return `provenance` with the record of `attempt` changed (created if missing), validated."""
    model = Provenance.model_validate(provenance)
    record = next((r for r in model.attempts if r.attempt == attempt), None)
    if record is None:
        record = AttemptRecord.model_validate({"attempt": attempt, "backend": "", "host": "", **changes})
        model.attempts.append(record)
    else:
        for name, value in changes.items():
            setattr(record, name, value)
    return Provenance.model_validate(model.model_dump()).model_dump(mode="json")
