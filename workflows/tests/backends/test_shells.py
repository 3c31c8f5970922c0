"""The shell every backend starts a tool with, run for real with /bin/sh: the tool is its child,
its output and exit status are the tool's own, and a signal is reported as 128 + N."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from workflows.backends.shells import (
    in_container,
    oom_killed,
    read_usage,
    run_as_child,
    signal_in,
    signal_name,
    usage_report,
)


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


def test_pid_1_records_what_the_tool_used_and_the_tools_output_stays_its_own(tmp_path: Path) -> None:
    tool = ["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo out; echo err >&2; exit 3"]
    out, err, usage = (str(tmp_path / name) for name in ("out", "err", "usage"))
    result = _run(in_container(tool, stdout=out, stderr=err, usage=usage), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "")
    assert (tmp_path / "out").read_text() == "out\n" and (tmp_path / "err").read_text() == "err\n"
    assert read_usage(tmp_path / "usage")["user_cpu_seconds"] >= 0.03  # the loop's, not the shell's 0


def test_a_usage_report_is_read_in_the_canonical_keys(tmp_path: Path) -> None:
    # dash's `times` (bash's has 3 decimals): the shell's own line, then its children's
    (tmp_path / "usage").write_text("0m0.000000s 0m0.010000s\n1m2.500000s 0m0.250000s\npeak_bytes 157286400\n")
    assert read_usage(tmp_path / "usage") == {
        "user_cpu_seconds": 62.5, "system_cpu_seconds": 0.25, "max_rss_mb": 150.0,
    }  # fmt: skip
    assert not oom_killed(tmp_path / "usage")
    (tmp_path / "usage").write_text("0m0.000s 0m0.000s\n0m0.100s 0m0.020s\noom_kills 1\n")
    assert read_usage(tmp_path / "usage") == {"user_cpu_seconds": 0.1, "system_cpu_seconds": 0.02}
    assert oom_killed(tmp_path / "usage")
    assert read_usage(tmp_path / "missing") == {} and not oom_killed(tmp_path / "missing")


def test_a_job_outside_a_cgroup_of_its_own_records_no_peak_memory(tmp_path: Path) -> None:
    """A Slurm node without task/cgroup: the shell's cgroup is its node's, whose peak is no job's."""
    report = usage_report(str(tmp_path / "usage"), cgroup="slurm-job")
    subprocess.run(["sh", "-c", f"true; {report}"], env={"SLURM_JOB_ID": "1", "PATH": "/usr/bin:/bin"}, check=True)
    assert read_usage(tmp_path / "usage").keys() == {"user_cpu_seconds", "system_cpu_seconds"}
