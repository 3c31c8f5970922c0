"""Each local job in a cgroup of its own (issue 21): the kernel enforces its memory, an out-of-memory
kill can be told from any other SIGKILL, and what is measured is the tool itself (every process it
starts, nothing of the worker that started it).

- Memory: the limit is the grant, with no swap beyond it. Past it the kernel's OOM killer kills the
  tool, and the cgroup counts an `oom_kill`. The peak is the cgroup's own high-water mark.
- CPU: the grant's cpus as a CFS quota (where the `cpu` controller is writable), and user and system
  CPU time as the cgroup accounts them.

cgroup v2 (one unified hierarchy: memory.max, memory.peak, memory.events, cpu.max, cpu.stat) or v1
(the memory, cpu and cpuacct hierarchies mounted separately or together). The job's cgroups are made
under the worker's own, in `emgapi-jobs/`. A job joins them through a shell that writes its own pid
and then `exec`s the job's argv, so nothing the tool does happens outside them.

Where no memory cgroup can be made, the local backend falls back to rlimits: memory as address space,
where an allocation fails instead (the tool reports it in its own words), and it measures wall time
only. So it is on a worker that is not root, and on most cgroup v2 hosts: v2 lets a cgroup hand its
controllers to children only while it holds no process itself, and the worker is in its own cgroup.
Moving the worker into a leaf of a delegated subtree (systemd's Delegate=yes) would lift that; it is
not done yet.

A job's move into its cgroups makes the kernel wait for an RCU grace period, unless another move came
just before: 10–17 ms of a lone job's wall time on the 2-core machine, against a trivial tool's 20.
On cgroup v1 the worker has the kernel skip that wait (`favor_moves`, bench/README.md).
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workflows.backends.shells import SHELL

logger = logging.getLogger(__name__)

JOBS = "emgapi-jobs"
FAVOR_NAME = "emgapi-favordynmods"  # a cgroup v1 hierarchy with no controller, mounted only for its flag
_counter = itertools.count(1)


@dataclass(frozen=True)
class Hierarchy:
    """A writable place for job cgroups: `base` (the worker's own cgroup's `emgapi-jobs/`) in a
    hierarchy with these controllers (v2: the ones enabled for children)."""

    base: Path
    controllers: frozenset[str]
    version: int


def _mounts(mountinfo: str) -> list[tuple[Path, str, set[str]]]:
    """(mount point, fs type, super options) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if len(fields) > 4 and len(after) >= 3 and after[0] in ("cgroup", "cgroup2"):
            found.append((Path(fields[4]), after[0], set(after[2].split(","))))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (or "" for v2) -> the worker's cgroup path in that hierarchy."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _writable_base(mount: Path, own: str) -> Path | None:
    base = mount / own.lstrip("/") / JOBS
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return None
    return base if os.access(base, os.W_OK) else None


def find_hierarchies(mountinfo: str, proc_cgroup: str) -> list[Hierarchy]:
    """The hierarchies jobs can be placed in; empty when memory cannot be (then none is used)."""
    own = _own_paths(proc_cgroup)
    found: list[Hierarchy] = []
    for mount, kind, options in _mounts(mountinfo):
        if kind == "cgroup2":
            # (the worker's own cgroup must hand memory to its children: a delegated subtree)
            own_dir = mount / own.get("", "/").lstrip("/")
            if "memory" not in (_read(own_dir / "cgroup.subtree_control") or "").split():
                continue
            base = _writable_base(mount, own[""])
            if base is None:
                continue
            controllers = _enable_v2(base)
            if "memory" in controllers:
                found.append(Hierarchy(base, controllers & {"memory", "cpu"}, 2))
        else:
            controllers = frozenset(options & {"memory", "cpu", "cpuacct"})
            if not controllers or any(c not in own for c in controllers):
                continue
            base = _writable_base(mount, own[next(iter(controllers))])
            if base is not None:
                found.append(Hierarchy(base, controllers, 1))
    if not any("memory" in h.controllers for h in found):
        return []
    return [h for h in found if h.version == (2 if any(h.version == 2 for h in found) else 1)]


def favor_moves(mountinfo: str) -> str | None:
    """Turn on the kernel's `favordynmods` where jobs use cgroup v1; what was done (for the log), or
    None where it was on already.

    Moving a process between cgroups takes a lock (`cgroup_threadgroup_rwsem`) that forks and exits
    take too; by default the kernel keeps those cheap and makes each move wait for an RCU grace period
    first. `favordynmods` swaps the two: moves go at once, and forks and exits pay a little more (on
    the 2-core machine: fork + exit 0.95 ms with it and without, a job's start 11 ms shorter; see
    bench/README.md). It acts for the whole host while any hierarchy carries it, and v1 takes it only
    as a mount option (a remount cannot add it), so a hierarchy of its own is mounted with it beside the
    host's, with no controller (`name=emgapi-favordynmods`): nothing is placed in it, and it stays
    mounted when the worker stops, for the next one. `execution.cgroups_favor_moves` turns this off."""
    mounts = _mounts(mountinfo)
    if any("favordynmods" in options for _, _, options in mounts):
        return None
    v1 = [mount for mount, kind, _ in mounts if kind == "cgroup"]
    mount_program = shutil.which("mount")
    if not v1 or mount_program is None:
        return "no cgroup v1 hierarchy or no mount program: each job's move into its cgroups waits for the kernel"
    parent = v1[0].parent  # beside the host's own hierarchies
    target = parent / FAVOR_NAME
    options = f"none,name={FAVOR_NAME},favordynmods"
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(parent_fd, fcntl.LOCK_EX)  # (workers starting together mount it once)
            if os.path.ismount(target):
                return None
            target.mkdir(exist_ok=True)
            subprocess.run(  # noqa: S603 - an argv list, fixed but for the path
                [mount_program, "-t", "cgroup", "-o", options, "cgroup", str(target)],
                check=True, capture_output=True, text=True, timeout=10,
            )  # fmt: skip
        finally:
            os.close(parent_fd)
    except (OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "stderr", None) or exc
        return f"could not mount {target} ({str(why).strip()}): each job's move into its cgroups waits for the kernel"
    return f"favordynmods on ({target}): jobs move into their cgroups without the kernel's wait"


def _enable_v2(base: Path) -> frozenset[str]:
    """The controllers `base`'s children get (a cgroup v2 parent must enable them for its children)."""
    try:
        available = set((base / "cgroup.controllers").read_text().split())
        wanted = available & {"memory", "cpu"}
        if wanted:
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in sorted(wanted)))
        return frozenset((base / "cgroup.subtree_control").read_text().split())
    except OSError:
        return frozenset()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _fields(text: str | None) -> dict[str, int]:
    """A flat-keyed cgroup file ("name value" lines) as a dict."""
    found: dict[str, int] = {}
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            found[name] = int(value)
    return found


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup in each hierarchy."""

    directories: Mapping[str, Path]  # controller -> the job's directory (v2: every controller, one directory)
    version: int

    def join_argv(self, argv: list[str]) -> list[str]:
        """`argv` run by a shell that first moves itself into the job's cgroups. The script is fixed;
        the directories and the job's argv are its arguments, never parsed by the shell."""
        files = [str(directory / "cgroup.procs") for directory in dict.fromkeys(self.directories.values())]
        writes = " && ".join(f'echo 0 >"${index}"' for index in range(1, len(files) + 1))
        return [SHELL, "-c", f'{writes} && shift {len(files)} && exec "$@"', "emgapi-cgroup", *files, *argv]

    def oom_killed(self) -> bool:
        memory = self.directories["memory"]
        events = _fields(_read(memory / ("memory.events" if self.version == 2 else "memory.oom_control")))
        return events.get("oom_kill", 0) > 0

    def usage(self) -> dict[str, float]:
        """Peak memory (MiB) and CPU seconds of everything the job ran; what cannot be read is left out."""
        usage: dict[str, float] = {}
        memory = self.directories["memory"]
        peak = _read(memory / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))
        if peak and peak.strip().isdigit():
            usage["max_rss_mb"] = round(int(peak) / 1024**2, 1)
        if self.version == 2 and "cpu" in self.directories:
            stat = _fields(_read(self.directories["cpu"] / "cpu.stat"))
            if "user_usec" in stat:
                usage["user_cpu_seconds"] = round(stat["user_usec"] / 1e6, 3)
                usage["system_cpu_seconds"] = round(stat["system_usec"] / 1e6, 3)
        elif "cpuacct" in self.directories:
            accounted = self.directories["cpuacct"]
            for key, name in (("user_cpu_seconds", "cpuacct.usage_user"), ("system_cpu_seconds", "cpuacct.usage_sys")):
                value = _read(accounted / name)
                if value and value.strip().isdigit():
                    usage[key] = round(int(value) / 1e9, 3)
        return usage

    def remove(self) -> bool:
        """Remove the job's cgroups, killing anything of the job still in them (a daemon it left).
        False while some remain: a process killed a moment ago (the sandbox's own, as it dies with the
        tool) leaves its cgroup only once it has exited, so try again a little later."""
        removed = True
        for directory in dict.fromkeys(self.directories.values()):
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
                for pid in (_read(directory / "cgroup.procs") or "").split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        return removed


class JobCgroups:
    """Makes each local job's cgroups; `available` is False where none can be made."""

    def __init__(self, hierarchies: list[Hierarchy]) -> None:
        self._hierarchies = hierarchies
        self._prefix = f"{os.getpid()}-"
        for hierarchy in hierarchies:
            _remove_stale(hierarchy.base)

    @classmethod
    def detect(cls, *, favor: bool = True) -> JobCgroups:
        """The hierarchies this worker can place jobs in; `favor`: with `favor_moves` where they are v1."""
        mountinfo, proc_cgroup = _read(Path("/proc/self/mountinfo")), _read(Path("/proc/self/cgroup"))
        hierarchies = find_hierarchies(mountinfo or "", proc_cgroup or "")
        if not hierarchies:
            logger.warning(
                "no writable memory cgroup: local tools get rlimits (memory as address space) and only their wall "
                "time is measured"
            )
        elif favor and hierarchies[0].version == 1 and (done := favor_moves(mountinfo or "")):
            logger.info("%s", done)
        return cls(hierarchies)

    @property
    def available(self) -> bool:
        return bool(self._hierarchies)

    def create(self, *, memory_mb: int, cpus: int) -> JobCgroup:
        # (random too: a worker in a container often has the pid an earlier one had, whose cgroup may remain)
        name = f"{self._prefix}{next(_counter)}-{secrets.token_hex(4)}"
        directories: dict[str, Path] = {}
        version = self._hierarchies[0].version
        try:
            for hierarchy in self._hierarchies:
                directory = hierarchy.base / name
                directory.mkdir()
                for controller in hierarchy.controllers:
                    directories[controller] = directory
            self._limit(directories, version, memory_mb=memory_mb, cpus=cpus)
        except OSError:
            JobCgroup(directories, version).remove()  # what was made of it
            raise
        return JobCgroup(directories, version)

    @staticmethod
    def _limit(directories: Mapping[str, Path], version: int, *, memory_mb: int, cpus: int) -> None:
        limit = str(memory_mb * 1024**2)
        memory = directories["memory"]
        if version == 2:
            (memory / "memory.max").write_text(limit)
            _write_if_present(memory / "memory.swap.max", "0")
            if "cpu" in directories:
                (directories["cpu"] / "cpu.max").write_text(f"{cpus * 100_000} 100000")
        else:
            (memory / "memory.limit_in_bytes").write_text(limit)
            _write_if_present(memory / "memory.memsw.limit_in_bytes", limit)  # (after the limit: never below it)
            if "cpu" in directories:
                _write_if_present(directories["cpu"] / "cpu.cfs_quota_us", str(cpus * 100_000))


def _write_if_present(path: Path, value: str) -> None:
    """Set an optional knob (swap accounting, CFS quota) where the kernel has it."""
    try:
        path.write_text(value)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.info("could not set %s: %s", path, exc)


def _remove_stale(base: Path) -> None:
    """Remove the empty job cgroups a worker that died left behind (never a live worker's)."""
    for directory in base.iterdir() if base.exists() else ():
        pid = directory.name.partition("-")[0]
        if directory.is_dir() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                directory.rmdir()
            except OSError:
                pass
