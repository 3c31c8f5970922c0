"""The shell every backend starts a tool with: it runs the tool as its child and waits for it.

Neither `exec` the tool nor hand it to an init (`docker run --init`): where the tool runs in a pid
namespace of its own (the sandbox's, a container's), PID 1 changes how a program behaves.

- A tool whose *parent* is PID 1 takes itself for a daemon. Easel's fatal-error handler (HMMER,
  Infernal) then sends its message to syslog instead of stderr: `hmmsearch` given DNA dies by
  SIGABRT and its "Did you mean to use nhmmer?" is lost. bwrap's init is the parent of what it
  starts, and so are tini's and catatonit's.
- A tool that *is* PID 1 is spared every signal it has no handler for, even its own: its abort()
  falls through to glibc's last resort, and it dies by SIGSEGV.

So a tool is the child of a shell that is not PID 1 itself: in the sandbox, under bwrap's init; in
a container, under a first shell that is PID 1; in a Slurm job, under the job's script. The shell
reports a tool killed by signal N as exit status 128 + N (`signal_in`), and adds nothing to the
tool's output: its own words (a shell prints "Aborted" when its child dies so) go to /dev/null,
while the tool writes to the shell's stdout and stderr, or to the log files it names.

`docker stop` still signals only PID 1, now a shell with no handler for SIGTERM: a container is
stopped after the grace period, as it always was for a tool without a handler of its own.

What the tool used is measured by the shell that started it, once the tool has ended, and written
to a small file (`USAGE_FILE` in the attempt's directory; `read_usage` reads it): the CPU times of
the shell's children (`times`, the same rusage that `/usr/bin/time` reports) and the peak memory of
the cgroup the tool ran in (cgroup v1 `memory.max_usage_in_bytes`, v2 `memory.peak`). In a
container that is the container's own cgroup; in a Slurm job, the job's own (task/cgroup), and only
if the job has one: a shell outside any cgroup of its own records no peak rather than its node's.
An engine cannot say it afterwards (`docker stats` is empty once a container has exited), and the
tool's output stays untouched: the file is the shell's alone. The peak counts the page cache the
tool caused besides its resident memory, as the kernel does when it enforces the limit; the two
small shells add about a megabyte.
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

SHELL = "/bin/sh"
NAME = "emgapi-tool"  # the shell's $0: what a message of its own would be signed with


USAGE_FILE = "usage"  # in the attempt's directory: what the shell measured (`read_usage`)
# a container's own memory cgroup, as the container sees it (cgroup v2, then v1)
_CONTAINER_PEAK = "for f in /sys/fs/cgroup/memory.peak /sys/fs/cgroup/memory/memory.max_usage_in_bytes; do "
_CONTAINER_PEAK += 'if [ -r "$f" ]; then echo "peak_bytes $(cat "$f")"; break; fi; done; '
# and how many of its processes the kernel killed for memory (Podman's inspection does not say)
_CONTAINER_PEAK += (
    "sed -n 's/^oom_kill /oom_kills /p' /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"
)
# a Slurm job's own memory cgroup (v1, else v2), trusted only if its path names the job
_JOB_PEAK = (
    "p=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup); f=/sys/fs/cgroup/memory$p/memory.max_usage_in_bytes; "
    "if [ -z \"$p\" ]; then p=$(sed -n 's/^0:://p' /proc/self/cgroup); f=/sys/fs/cgroup$p/memory.peak; fi; "
    'case "$p" in */job_"$SLURM_JOB_ID"/*) if [ -r "$f" ]; then echo "peak_bytes $(cat "$f")"; fi;; esac'
)


def usage_report(path: str, *, cgroup: str) -> str:
    """Shell code, run after the tool, that writes its measured usage to `path`: the shell's
    children's CPU times, and the peak memory of the `cgroup` ("container": the container's own;
    "slurm-job": the job's own, if it has one). It never fails the script."""
    peak = {"container": _CONTAINER_PEAK, "slurm-job": _JOB_PEAK}[cgroup]
    return f"{{ times; {peak}; }} 2>/dev/null >{shlex.quote(path)}"


def run_as_child(
    argv: list[str] | tuple[str, ...], *, stdout: str = "", stderr: str = "", usage: str = ""
) -> list[str]:
    """`argv` run by a shell that waits for it, with its output appended to `stdout`/`stderr`
    (paths as the tool sees them) if given, and, if `usage` is given, the usage it measured of a
    container's tool written there (`usage_report`)."""
    tool_stderr = f"3>>{shlex.quote(stderr)}" if stderr else "3>&2"
    tool_stdout = f" >>{shlex.quote(stdout)}" if stdout else ""
    # the subshell forks and applies the tool's redirections in the child only: the shell's own
    # report of the child's end stays on its /dev/null. `; exit`: no shell may exec the
    # subshell or the tool in its own place (bash and busybox do so for a script's last command)
    script = f'exec {tool_stderr} 2>/dev/null; (exec "$@"{tool_stdout} 2>&3 3>&-); '
    script += f"code=$?; {usage_report(usage, cgroup='container')}; exit $code" if usage else "exit $?"
    return [SHELL, "-c", script, NAME, *argv]


def in_container(
    argv: list[str] | tuple[str, ...], *, stdout: str = "", stderr: str = "", usage: str = ""
) -> list[str]:
    """A container's command for `argv`: PID 1 is a shell whose child is the shell that waits for
    the tool; PID 1 writes what the tool used to `usage` (a path in the container) if given."""
    return run_as_child(run_as_child(argv), stdout=stdout, stderr=stderr, usage=usage)


_TIMES = re.compile(r"(\d+)m\s*([\d.]+)s\s+(\d+)m\s*([\d.]+)s")


def _report(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def oom_killed(path: Path) -> bool:
    """Whether the kernel killed a process of the container for memory, as its shell recorded
    (`usage_report`): a container engine's own OOMKilled flag is not reliable (Podman 4 on cgroup
    v1 never sets it), and a Slurm job that runs a container does not see it."""
    match = re.search(r"^oom_kills (\d+)$", _report(path), re.MULTILINE)
    return match is not None and int(match.group(1)) > 0


def read_usage(path: Path) -> dict[str, float]:
    """The canonical `resource_usage` keys a shell measured (`usage_report`): user_cpu_seconds and
    system_cpu_seconds (its children's: `times`' second line), max_rss_mb (the cgroup's peak, MiB).
    A key the file does not hold is left out; a missing or empty file gives {}."""
    text = _report(path)
    usage: dict[str, float] = {}
    times = _TIMES.findall(text)
    if len(times) >= 2:  # the shell's own, then its children's: the tool and the shell between
        user_minutes, user_seconds, system_minutes, system_seconds = times[1]
        usage["user_cpu_seconds"] = round(int(user_minutes) * 60 + float(user_seconds), 3)
        usage["system_cpu_seconds"] = round(int(system_minutes) * 60 + float(system_seconds), 3)
    if match := re.search(r"^peak_bytes (\d+)$", text, re.MULTILINE):
        usage["max_rss_mb"] = round(int(match.group(1)) / 1048576, 3)
    return usage


def signal_in(exit_code: int) -> int | None:
    """The signal N a tool died by, read from the 128 + N its shell reported; None for the tool's
    own exit code (a code above 159, such as perl's die's 255, is never a signal's)."""
    return exit_code - 128 if 128 < exit_code < 160 else None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
