"""A TES task's outputs are found inside its own directory tree only, and its scratch space is
measured there: whatever a container linked to is never listed, stat-ed or stored, and the errors
say no more than "not found" (the run itself, in containers: test_tes.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from calculations.storage import get_storage
from calculations.tes.paths import plan_mounts
from calculations.tes.schemas import TaskIn
from emgapiv2.config import get_settings
from workflows.execution.task_trees import OutputProblem, collect_outputs, scratch_bytes

NOT_A_FILE = "not found, or not a regular file, inside the task's directories"
NOT_A_DIRECTORY = "not found, or not a directory, inside the task's directories"


def _mark_unread(directory: Path) -> None:
    os.utime(directory, (0, directory.stat().st_mtime))


def _was_listed(directory: Path) -> bool:
    """Whether anyone read the directory since `_mark_unread` (relatime updates an access time older
    than the modification time)."""
    return directory.stat().st_atime != 0


@pytest.fixture(autouse=True)
def _reads_are_recorded(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "x").touch()
    _mark_unread(probe)
    os.listdir(probe)
    if not _was_listed(probe):
        pytest.skip("this filesystem does not record reads (noatime): cannot tell whether a folder was listed")


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host folder the worker can read, full of names a task must never learn, marked as never read."""
    folder = tmp_path / "host"
    (folder / "deep").mkdir(parents=True)
    for i in range(20):
        (folder / f"hostonly-{i}.txt").write_text("secret\n")
    for i in range(1500):  # more than a task may store: a walk of it would fail on the count
        (folder / "deep" / f"hostonly-deep-{i}").write_text("secret\n")
    for directory in (folder, folder / "deep"):
        _mark_unread(directory)
    return folder


@pytest.fixture
def fs(tmp_path: Path) -> Path:
    root = tmp_path / "attempt" / "fs"
    (root / "data" / "out").mkdir(parents=True)
    return root


def collect(fs: Path, *outputs: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """(role, name, bytes) of each output `collect_outputs` stored."""
    task = TaskIn.model_validate({"executors": [{"image": "x", "command": ["true"]}], "outputs": list(outputs)})
    blobs, _entries = collect_outputs(task, plan_mounts(task), fs)
    storage = get_storage()
    return sorted((blob.role, blob.name, b"".join(storage.iter_chunks(blob.sha256))) for blob in blobs)


def problem(fs: Path, *outputs: dict[str, Any]) -> str:
    with pytest.raises(OutputProblem) as raised:
        collect(fs, *outputs)
    return str(raised.value)


def test_a_file_output_through_a_link_is_not_found_whether_or_not_the_host_file_exists(fs: Path, host: Path) -> None:
    (fs / "data" / "sub").symlink_to(host)
    (fs / "data" / "out" / "f.txt").symlink_to(host / "hostonly-1.txt")
    existing = problem(fs, {"path": "/data/sub/hostonly-1.txt"})
    missing = problem(fs, {"path": "/data/sub/absent.txt"})
    assert existing == f"outputs[0] (/data/sub/hostonly-1.txt): {NOT_A_FILE}"
    assert missing == existing.replace("hostonly-1.txt", "absent.txt")  # no existence oracle
    assert problem(fs, {"path": "/data/out/f.txt"}) == f"outputs[0] (/data/out/f.txt): {NOT_A_FILE}"


def test_a_glob_whose_directory_is_a_link_matches_nothing_and_lists_nothing(fs: Path, host: Path) -> None:
    (fs / "data" / "sub").symlink_to(host)
    (fs / "data" / "out" / "a.txt").write_text("mine\n")
    stored = collect(
        fs,
        {"path": "/data/sub/*", "path_prefix": "/data/sub/"},
        {"path": "/data/*/hostonly-*", "path_prefix": "/data/"},  # through the link one level down
        {"path": "/data/out/a.txt"},
    )
    assert stored == [("outputs[2]", "a.txt", b"mine\n")]
    assert not _was_listed(host)


@pytest.mark.parametrize("path", ["/data/sub", "/data/sub/deep"])
def test_a_directory_output_that_is_or_lies_under_a_link_is_not_found_and_not_walked(
    fs: Path, host: Path, path: str
) -> None:
    (fs / "data" / "sub").symlink_to(host)
    assert problem(fs, {"path": path, "type": "DIRECTORY"}) == f"outputs[0] ({path}): {NOT_A_DIRECTORY}"
    assert not _was_listed(host) and not _was_listed(host / "deep")


def test_links_inside_a_walked_directory_are_skipped_not_followed(fs: Path, host: Path) -> None:
    out = fs / "data" / "out"
    (out / "nested").mkdir()
    (out / "a.txt").write_text("a\n")
    (out / "nested" / "b.txt").write_text("b\n")
    (out / "to-host").symlink_to(host)
    (out / "nested" / "to-host-file.txt").symlink_to(host / "hostonly-1.txt")
    (out / "to-a.txt").symlink_to(out / "a.txt")  # a link inside the tree is skipped as well
    assert collect(fs, {"path": "/data/out", "type": "DIRECTORY"}) == [
        ("outputs[0]", "a.txt", b"a\n"),
        ("outputs[0]", "nested_b.txt", b"b\n"),
    ]
    assert collect(fs, {"path": "/data/out/*/*.txt", "path_prefix": "/data/out/"}) == [
        ("outputs[0]", "nested_b.txt", b"b\n")
    ]
    assert not _was_listed(host)


def test_too_many_output_files_is_said_without_listing_them(fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().tes, "max_output_files", 3)
    for i in range(5):
        (fs / "data" / "out" / f"{i}.txt").write_text(str(i))
    message = problem(fs, {"path": "/data/out", "type": "DIRECTORY"})
    assert message == "the task's outputs are more than 3 files; the limit is 3 (EMGAPI_TES__MAX_OUTPUT_FILES)"


def test_scratch_is_what_the_tree_takes_on_disk_never_what_it_links_to(fs: Path, host: Path) -> None:
    empty = scratch_bytes(fs)
    (fs / "data" / "out" / "big").write_bytes(b"x" * 1_000_000)
    os.link(fs / "data" / "out" / "big", fs / "data" / "out" / "big-again")  # one file, two names
    (fs / "data" / "sub").symlink_to(host)
    (fs / "data" / "usr").symlink_to("/usr")
    grown = scratch_bytes(fs) - empty
    assert 1_000_000 <= grown < 1_100_000
    assert not _was_listed(host)


def test_a_tree_too_deep_to_walk_is_refused_not_a_crash(fs: Path) -> None:
    from workflows.execution.task_trees import MAX_DEPTH, Unwalkable

    directory = os.open(fs / "data", os.O_RDONLY)
    for _ in range(MAX_DEPTH + 5):  # deeper than any path the worker could name
        os.mkdir("d", dir_fd=directory)
        inner = os.open("d", os.O_RDONLY, dir_fd=directory)
        os.close(directory)
        directory = inner
    os.close(directory)
    with pytest.raises(Unwalkable):
        scratch_bytes(fs)
    assert problem(fs, {"path": "/data", "type": "DIRECTORY"}).startswith("outputs[0] (/data): the task's directories")
