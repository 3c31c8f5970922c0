"""Where an attempt works on disk: one directory per attempt, holding its staged inputs, the tool's
working directory and its live logs. The worker writes there; the logs endpoint reads there."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from emgapiv2.config import get_settings


def attempt_dir(calculation_id: UUID, attempt: int) -> Path:
    return get_settings().calculations_dir / str(calculation_id) / f"attempt-{attempt}"


def log_paths(calculation_id: UUID, attempt: int) -> tuple[Path, Path]:
    """stdout and stderr of the tool in this attempt (live while it runs)."""
    base = attempt_dir(calculation_id, attempt)
    return base / "stdout.txt", base / "stderr.txt"
