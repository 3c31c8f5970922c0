"""The shell every backend starts a tool with, run for real with /bin/sh: the tool is its child,
its output and exit status are the tool's own, and a signal is reported as 128 + N."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from workflows.backends.shells import in_container, run_as_child, signal_in, signal_name


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=10)


def test_the_tool_is_the_shells_child_and_its_output_is_its_own(tmp_path: Path) -> None:
    tool = ["sh", "-c", 'echo "$PPID" > ppid; echo out; echo err >&2; exit 3']
    shell = subprocess.Popen(
        run_as_child(tool), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = shell.communicate(timeout=10)
    assert (shell.returncode, stdout, stderr) == (3, "out\n", "err\n")
    assert (tmp_path / "ppid").read_text() == f"{shell.pid}\n"  # not exec'd in the shell's place


def test_a_tool_killed_by_a_signal_is_reported_as_128_plus_n_and_the_shell_says_nothing(tmp_path: Path) -> None:
    result = _run(run_as_child(["sh", "-c", "echo last words >&2; kill -ABRT $$"]), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (134, "", "last words\n")  # no "Aborted"
    assert signal_in(result.returncode) == 6 and signal_name(6) == "SIGABRT"


def test_a_program_that_cannot_start_is_said_on_stderr(tmp_path: Path) -> None:
    result = _run(run_as_child(["no-such-program-xyz"]), tmp_path)
    assert result.returncode == 127 and "no-such-program-xyz: not found" in result.stderr


def test_in_a_container_the_tool_is_the_grandchild_of_pid_1_and_appends_to_the_logs(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("earlier\n")
    tool = ["sh", "-c", 'echo "$PPID" > ppid; echo out; echo err >&2; kill -TERM $$']
    command = in_container(tool, stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"))
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = first.communicate(timeout=10)
    assert (first.returncode, stdout, stderr) == (143, "", "")
    assert (tmp_path / "out").read_text() == "earlier\nout\n" and (tmp_path / "err").read_text() == "err\n"
    assert int((tmp_path / "ppid").read_text()) != first.pid  # a second shell between them


@pytest.mark.parametrize(("exit_code", "number"), [(0, None), (1, None), (128, None), (129, 1), (159, 31), (255, None)])
def test_only_128_plus_a_standard_signal_is_read_as_one(exit_code: int, number: int | None) -> None:
    assert signal_in(exit_code) == number  # 255: perl's die and many CLIs, the tool's own
