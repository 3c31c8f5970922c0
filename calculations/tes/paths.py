"""Where a TES task's files live: container paths checked once at submission, and the host
directories bound at them.

Every directory a task names (its inputs' and outputs' directories, its volumes, its executors'
working directories) becomes one read-write bind mount of `<attempt>/fs/<path>`, shared by all its
executors in turn; the image's own files stay read-only. So an input is a copy (a tool may write
beside it, never into a stored blob), and an output is found on the host at the same relative path.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from calculations.errors import InvalidInput
from calculations.tes.schemas import FileType, TaskIn

# A task may not bind over these, nor under them: an image's own system (its shell, libraries and
# configuration, which the `/bin/sh` wrapper and any tool need), what the engine mounts itself, and
# the platform's log files. Binding an empty directory at one would break every run of the task, so
# it is a 400 at submission, not a retried SYSTEM_ERROR. Data directories (/data, /tmp, /home, /opt,
# /var, /mnt, ...) are free.
RESERVED = (
    "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/boot",
    "/proc", "/sys", "/dev", "/run", "/emgapi",
)  # fmt: skip
WILDCARD = re.compile(r"[*?\[]")


def check_path(path: str, where: str) -> str:
    """An absolute, normalised container path, or a 400 saying why not."""
    if "\x00" in path or not path.startswith("/"):
        raise InvalidInput(f"{where}: {path!r} is not an absolute path (it must start with /)")
    if posixpath.normpath(path) != path.rstrip("/") or "//" in path:
        raise InvalidInput(f"{where}: {path!r} is not a normalised path (no '.', '..' or '//' parts)")
    path = path.rstrip("/") or "/"
    if ":" in path or "," in path:  # the engines' volume syntax separates fields with these
        raise InvalidInput(f"{where}: {path!r} holds ':' or ',', which container paths cannot")
    if any(len(part.encode()) > 255 for part in path.split("/")):
        raise InvalidInput(f"{where}: a part of {path[:80]!r}… is longer than 255 bytes")
    if path == "/":
        raise InvalidInput(f"{where}: the container's root directory cannot be used; name a directory, e.g. /data")
    for reserved in RESERVED:
        if path == reserved or path.startswith(reserved + "/"):
            raise InvalidInput(
                f"{where}: {path!r} is under {reserved}, which the image or the engine needs for itself "
                f"(reserved: {', '.join(RESERVED)}); use a data directory such as /data"
            )
    return path


def static_dir(path: str) -> str:
    """The directory part of a wildcard path before its first wildcard."""
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if WILDCARD.search(part))
    return "/".join(parts[:first]) or "/"


@dataclass(frozen=True)
class MountPlan:
    """The container directories bound read-write, each to `<fs root>/<directory>` on the host."""

    directories: tuple[str, ...]

    @staticmethod
    def host_path(fs_root: Path, container_path: str) -> Path:
        return fs_root / container_path.lstrip("/")


def plan_mounts(task: TaskIn) -> MountPlan:
    """Check every path of the task and derive the directories to bind (a 400 names the first wrong one)."""
    wanted: list[tuple[str, str]] = []  # (directory, where it comes from)

    def parent(path: str, where: str) -> None:
        directory = posixpath.dirname(path)
        if directory == "/":
            raise InvalidInput(f"{where}: {path!r} is directly in /; put it in a directory, e.g. /data{path}")
        wanted.append((directory, where))

    seen_inputs: dict[str, str] = {}
    for i, item in enumerate(task.inputs or ()):
        where = f"inputs[{i}].path"
        path = check_path(item.path, where)
        if WILDCARD.search(path):
            raise InvalidInput(f"{where}: an input path cannot hold wildcards")
        if path in seen_inputs:
            raise InvalidInput(f"{where}: {path!r} is also {seen_inputs[path]}")
        seen_inputs[path] = where
        parent(path, where)
    for i, output in enumerate(task.outputs or ()):
        where = f"outputs[{i}].path"
        path = check_path(output.path, where)
        if WILDCARD.search(path):
            if not output.path_prefix or not output.path.startswith(output.path_prefix):
                raise InvalidInput(
                    f"outputs[{i}].path_prefix: a path with wildcards needs a path_prefix it starts with "
                    "(the part removed to name each matched file)"
                )
            directory = static_dir(path)
            if directory == "/":
                raise InvalidInput(f"{where}: wildcards directly under / are not supported; use e.g. /data/*.txt")
            wanted.append((directory, where))
        elif output.type is FileType.DIRECTORY:
            wanted.append((path, where))
        else:
            parent(path, where)
    for i, volume in enumerate(task.volumes or ()):
        wanted.append((check_path(volume, f"volumes[{i}]"), f"volumes[{i}]"))
    for i, executor in enumerate(task.executors):
        if executor.workdir:
            wanted.append((check_path(executor.workdir, f"executors[{i}].workdir"), f"executors[{i}].workdir"))
        for stream in ("stdout", "stderr"):
            if value := getattr(executor, stream):
                parent(check_path(value, f"executors[{i}].{stream}"), f"executors[{i}].{stream}")
        if executor.stdin:
            check_path(executor.stdin, f"executors[{i}].stdin")
    directories: list[str] = []
    for directory, _where in sorted(set(wanted), key=lambda pair: (pair[0].count("/"), pair[0])):
        if not any(directory == kept or directory.startswith(kept + "/") for kept in directories):
            directories.append(directory)
    for path, where in seen_inputs.items():
        if path in directories:
            raise InvalidInput(f"{where}: {path!r} is a file input, but the task also uses it as a directory")
    return MountPlan(tuple(sorted(directories)))
