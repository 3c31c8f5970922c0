"""Where an attempt works on disk: one directory per attempt, holding its staged inputs, the tool's
working directory and its live logs. The worker writes there; the logs endpoint reads there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePath
from uuid import UUID

from emgapiv2.config import get_settings


def attempt_dir(calculation_id: UUID, attempt: int) -> Path:
    return get_settings().calculations_dir / str(calculation_id) / f"attempt-{attempt}"


def remove_attempt_dir(base: Path) -> None:
    """A completed attempt's directory, and its calculation's once empty: left behind, every sweep
    would walk them all (file I/O: call in a thread)."""
    shutil.rmtree(base, ignore_errors=True)
    try:
        base.parent.rmdir()  # (only if empty: a directory with another attempt's stays)
    except OSError:
        pass


def log_paths(calculation_id: UUID, attempt: int) -> tuple[Path, Path]:
    """stdout and stderr of the tool in this attempt (live while it runs)."""
    base = attempt_dir(calculation_id, attempt)
    return base / "stdout.txt", base / "stderr.txt"


# a compression suffix is kept with the one before it (`reads.fq.gz`): tools read both
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".zst"})
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


def staged_input_name(role: str, file_name: str) -> str:
    """The name an input is staged under: its role and its file name's extension (`contigs.fna`).

    Tools may read a format from the extension (obabel); nothing else of the user's name is kept,
    since argv, logs and outputs (hmmsearch writes its input paths) are what a cache hit shows
    another user."""
    kept: list[str] = []
    for suffix in reversed(PurePath(file_name).suffixes):
        if not _EXTENSION.fullmatch(suffix):
            break
        kept.insert(0, suffix)
        if suffix.lower() not in _COMPRESSION_SUFFIXES:
            break
    return role + "".join(kept)
