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
    """This boot of this machine, and this pid namespace: where a pid means the same process ('' if
    unknown: then no pid is trusted). Two containers on one host share the boot id, not the namespace."""
    try:
        return f"{BOOT_ID.read_text().strip()}:{os.stat('/proc/self/ns/pid').st_ino}"
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


def group_members(pgid: int, started_from: str) -> list[int]:
    """Live processes of process group `pgid` that started no earlier than `started_from`. The kernel
    never hands out a pid that is still some group's id, so while any member lives, the group (and
    its id) is the one that was started, even after its leader exited."""
    if not started_from:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields after the command: state, ppid, pgrp, …, starttime (the 20th)
        if fields[0] != "Z" and int(fields[2]) == pgid and int(fields[19]) >= int(started_from):
            members.append(int(entry.name))
    return members


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
    host, pid, boot, ticks = socket.gethostname(), os.getpid(), boot_id(), process_start_ticks(os.getpid())
    # the start time makes the name unique even where pids repeat (a restarted container's worker)
    return WorkerIdentity(f"{host}:{pid}:{boot[:8]}:{ticks}", host, pid, boot, ticks)
