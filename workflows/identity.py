"""Who this worker process is, and how to recognise a process again later (pid plus its start time
and the machine's boot id: a pid alone may have been reused)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_start_ticks(pid: int) -> str:
    """When the process started, in clock ticks since boot ('' if it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces: count the fields after its closing parenthesis
    return stat.rsplit(")", 1)[1].split()[19]


def is_running(pid: int, start_ticks: str) -> bool:
    """True if the process `pid` that started at `start_ticks` still runs (not merely its pid)."""
    return bool(start_ticks) and process_start_ticks(pid) == start_ticks


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    host: str
    pid: int
    boot_id: str
    start_ticks: str


@lru_cache
def this_worker() -> WorkerIdentity:
    host, pid, boot = socket.gethostname(), os.getpid(), boot_id()
    return WorkerIdentity(f"{host}:{pid}:{boot[:8]}", host, pid, boot, process_start_ticks(pid))
