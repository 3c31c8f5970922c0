"""A GA4GH TES task's directory tree on the worker's side: its inputs placed at their container
paths, its size measured against its scratch space, an executor's stdout or stderr written where it
asked, and its outputs found and stored.

An executor may leave links anywhere in the tree, so the worker reaches nothing through one: each
path is opened from the attempt's `fs/` one directory at a time (`O_NOFOLLOW`), walked with `scandir`
on descriptors, and a file is stored through the descriptor that checked it, never by its host path
again. No message names or counts anything a link leads to: only the task's own paths appear.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from calculations import actions
from calculations.actions import OutputBlob
from calculations.actions.tes import input_role
from calculations.storage import StorageError, get_storage
from calculations.tes import TES_TOOL
from calculations.tes.external import download_object
from calculations.tes.paths import WILDCARD, MountPlan, static_dir
from calculations.tes.schemas import FileType, TaskIn
from emgapiv2.config import get_settings

if TYPE_CHECKING:
    from os import _ScandirIterator


class OutputProblem(Exception):
    pass


class UnreachableLocation(Exception):
    """A location the task names that this deployment cannot read or write."""


class Unwalkable(Exception):
    """A task's tree the worker cannot walk whole (too deep, or a directory it may not read): refused
    rather than left partly unmeasured."""


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# a walk holds two descriptors per level (the directory and its listing)
MAX_DEPTH = 256
NOT_A_FILE = "not found, or not a regular file, inside the task's directories"
NOT_A_DIRECTORY = "not found, or not a directory, inside the task's directories"


def _open_directory(root: Path, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of the directory `root/parts…`, opened one part at a time without following a
    link: an executor may have left one anywhere, and the worker must reach nothing outside the
    task's tree. `create` makes missing parts. An OSError (ELOOP, ENOTDIR, ENOENT) names the part."""
    directory = os.open(root, _DIRECTORY)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=directory)
                except FileExistsError:
                    pass
            try:
                inner = os.open(part, _DIRECTORY, dir_fd=directory)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, part) from None
            os.close(directory)
            directory = inner
    except BaseException:
        os.close(directory)
        raise
    return directory


def _entries(top: int, depth: int | None = None) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
    """(path below `top` as parts, lstat) of each entry under the open directory `top`, at most
    `depth` levels down, listed by descriptor: a link is an entry like any other, never followed,
    so nothing outside the tree is listed or stat-ed."""
    stack: list[tuple[int, _ScandirIterator[str], tuple[str, ...]]] = []
    try:
        directory = os.dup(top)
        stack.append((directory, os.scandir(directory), ()))
        while stack:
            directory, listing, parts = stack[-1]
            entry = next(listing, None)
            if entry is None:
                stack.pop()
                listing.close()
                os.close(directory)
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            here = (*parts, entry.name)
            yield here, info
            if stat.S_ISDIR(info.st_mode) and (depth is None or len(here) < depth):
                if len(stack) >= MAX_DEPTH:
                    raise Unwalkable(f"the task's directories nest deeper than {MAX_DEPTH} levels")
                try:
                    inner = os.open(entry.name, _DIRECTORY, dir_fd=directory)
                except PermissionError:
                    raise Unwalkable(
                        "the task left a directory the worker may not read (its permissions removed)"
                    ) from None
                except OSError:
                    continue  # replaced by a link, or removed, meanwhile
                stack.append((inner, os.scandir(inner), here))
    finally:
        for directory, listing, _parts in stack:
            listing.close()
            os.close(directory)


def scratch_bytes(fs: Path) -> int:
    """The disk space a task's tree takes, as du counts it: allocated blocks (a sparse file counts
    what it holds), a file with several names once, and nothing that a link points at."""
    try:
        top = os.open(fs, _DIRECTORY)
    except FileNotFoundError:
        return 0  # a task that names no directory has no tree
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        for _parts, info in _entries(top):
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    finally:
        os.close(top)
    return total


def scratch_problem(fs: Path, limit_bytes: int) -> str | None:
    """Why the task's tree is over its scratch space (the message the task ends with), or None."""
    try:
        used = scratch_bytes(fs)
    except Unwalkable as exc:
        return f"scratch space cannot be measured: {exc}"
    if used <= limit_bytes:
        return None
    most = get_settings().tes.max_disk_gb
    return (
        f"scratch space exceeded: {used} bytes written, the limit is {limit_bytes} "
        f"(ask for more with resources.disk_gb, up to {most:g} GB here)"
    )


def _open_output(fs: Path, container_path: str) -> int | None:
    """A descriptor for reading the regular file at `container_path`, reached without following a
    link; None for anything else (missing, a link, a FIFO, a directory: one answer, so that an
    error cannot tell what a link points at, or whether it exists)."""
    parts = PurePosixPath(container_path).parts[1:]
    try:
        directory = _open_directory(fs, parts[:-1])
    except OSError:
        return None
    try:
        descriptor = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _open_inside(root: Path, container_path: str) -> int:
    """A descriptor for writing the host file at `container_path` under `root`, its directories made
    and opened without following links (the worker must create nothing outside the task's tree),
    and only if it is a regular file: a FIFO would block the worker until someone read it."""
    parts = PurePosixPath(container_path).parts[1:]
    try:
        directory = _open_directory(root, parts[:-1], create=True)
    except OSError as exc:  # ELOOP, ENOTDIR: a link, or a file where a directory should be
        raise OutputProblem(f"{container_path}: {exc.filename!r} on the way is a link or not a directory") from None
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            descriptor = os.open(parts[-1], flags, 0o644, dir_fd=directory)
        except OSError:  # ELOOP (a link), ENXIO (a FIFO no one reads), EISDIR
            raise OutputProblem(f"{container_path} is not a regular file") from None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OutputProblem(f"{container_path} is not a regular file")
    os.set_blocking(descriptor, True)
    os.ftruncate(descriptor, 0)
    return descriptor


def copy_segment(source: Path, start: int, end: int, root: Path, container_path: str) -> None:
    """An executor's own stdout or stderr, to the container path it asked for."""
    with source.open("rb") as reader, os.fdopen(_open_inside(root, container_path), "wb") as writer:
        reader.seek(start)
        remaining = end - start
        while remaining > 0 and (chunk := reader.read(min(remaining, 1024 * 1024))):
            writer.write(chunk)
            remaining -= len(chunk)


def stage_inputs(
    task: TaskIn,
    plan: MountPlan,
    fs: Path,
    blobs: dict[str, str],
    external: dict[str, Any],
    unreachable: list[dict[str, str]],
) -> None:
    """Each input at its place (copied: an executor may change it without harming the stored blob).
    First, a URL the task names that this deployment cannot reach ends it: nothing would run."""
    if unreachable:
        raise UnreachableLocation("; ".join(f"{item['where']}: {item['reason']}" for item in unreachable))
    storage = get_storage()
    for directory in plan.directories:
        plan.host_path(fs, directory).mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(task.inputs or ()):
        destination = plan.host_path(fs, item.path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if item.content is not None:
            destination.write_bytes(item.content.encode())
        elif (sha256 := blobs.get(input_role(i))) is not None:
            storage.copy_to_path(sha256, destination)
        elif (where := external.get(str(i))) is not None:
            download_object(where["bucket"], where["key"], destination)
        else:
            raise StorageError(f"inputs[{i}]: its file is gone (deleted after the task was submitted?)")


class _NotInside(Exception):
    """A container directory is not one inside the task's tree: it, or one on the way, is a link, or missing."""


def _regular_files(fs: Path, directory: str, depth: int | None = None) -> Iterator[str]:
    """Container paths of the regular files under a container directory, at most `depth` levels
    down, walked without following a link; `_NotInside` at once if the directory is not inside."""
    try:
        top = _open_directory(fs, PurePosixPath(directory).parts[1:])
    except OSError:
        raise _NotInside from None
    try:
        for below, info in _entries(top, depth):
            if stat.S_ISREG(info.st_mode):
                yield "/".join((directory.rstrip("/"), *below))
    finally:
        os.close(top)


def _unique(name: str, used: set[str]) -> str:
    """`name`, or `name-2`, `name-3`…: each stored output of a role has its own name."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        stem, dot, suffix = name.partition(".")
        candidate = f"{stem}-{n}{dot}{suffix}"
    used.add(candidate)
    return candidate


def _output_name(url: str | None, relative: str) -> str:
    return "_".join(filter(None, [url, relative.replace("/", "_")]))


def _found_outputs(task: TaskIn, fs: Path) -> list[tuple[str, str, str]]:
    """(role, file name, container path) of every output file, found inside the task's tree only. No
    message names or counts anything a link leads to: only the task's own paths appear."""
    limit = get_settings().tes.max_output_files
    found: list[tuple[str, str, str]] = []

    def add(role: str, name: str, container: str) -> None:
        if len(found) >= limit:  # said before walking on: a tree may hold millions of files
            raise OutputProblem(
                f"the task's outputs are more than {limit} files; the limit is {limit} (EMGAPI_TES__MAX_OUTPUT_FILES)"
            )
        found.append((role, name, container))

    for i, output in enumerate(task.outputs or ()):
        role, where = output.name or f"outputs[{i}]", f"outputs[{i}] ({output.path})"
        try:
            if WILDCARD.search(output.path):
                start = static_dir(output.path)
                depth = len(PurePosixPath(output.path).parts) - len(PurePosixPath(start).parts)
                try:
                    for container in _regular_files(fs, start, depth):
                        if PurePosixPath(container).match(output.path):
                            relative = container.removeprefix(output.path_prefix or "").lstrip("/")
                            add(role, _output_name(output.url, relative), container)
                except _NotInside:
                    pass  # matches nothing, as a directory that is not there
            elif output.type is FileType.DIRECTORY:
                try:
                    for container in _regular_files(fs, output.path):
                        relative = container.removeprefix(output.path.rstrip("/") + "/")
                        add(role, _output_name(output.url, relative), container)
                except _NotInside:
                    raise OutputProblem(f"{where}: {NOT_A_DIRECTORY}") from None
            else:
                descriptor = _open_output(fs, output.path)
                if descriptor is None:
                    raise OutputProblem(f"{where}: {NOT_A_FILE}")
                os.close(descriptor)
                add(role, output.url or PurePosixPath(output.path).name, output.path)
        except Unwalkable as exc:
            raise OutputProblem(f"{where}: {exc}") from None
    return found


def _opened_output(fs: Path, container: str) -> int:
    if (descriptor := _open_output(fs, container)) is None:
        raise OutputProblem(f"{container}: {NOT_A_FILE}")  # gone since it was found
    return descriptor


def collect_outputs(task: TaskIn, plan: MountPlan, fs: Path) -> tuple[list[OutputBlob], list[dict[str, str]]]:
    """Store every output; the log entries say at which container path each stored file was. Each
    file is read through the descriptor its checks opened (`/proc/self/fd`), never by its host path
    again."""
    found = _found_outputs(task, fs)
    total, limit = 0, get_settings().quota.output_limit(TES_TOOL)
    for _role, _name, container in found:
        descriptor = _opened_output(fs, container)
        total += os.fstat(descriptor).st_size
        os.close(descriptor)
    if total > limit:
        raise OutputProblem(f"the task's outputs are {total} bytes; the limit is {limit} bytes (EMGAPI_QUOTA__*)")
    storage = get_storage()
    blobs, entries = [], []
    used: dict[str, set[str]] = {}
    for role, name, container in found:
        descriptor = _opened_output(fs, container)
        try:
            info = storage.put_path(Path(f"/proc/self/fd/{descriptor}"))
        finally:
            os.close(descriptor)
        name = _unique(actions.clean_file_name(name), used.setdefault(role, set()))
        blobs.append(OutputBlob(role=role, name=name, sha256=info.sha256, size=info.size))
        entries.append({"role": role, "name": name, "path": container})
    return blobs, entries
