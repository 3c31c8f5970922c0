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
"""

from __future__ import annotations

import shlex
import signal

SHELL = "/bin/sh"
NAME = "emgapi-tool"  # the shell's $0: what a message of its own would be signed with


def run_as_child(argv: list[str] | tuple[str, ...], *, stdout: str = "", stderr: str = "") -> list[str]:
    """`argv` run by a shell that waits for it, with its output appended to `stdout`/`stderr`
    (paths as the tool sees them) if given."""
    tool_stderr = f"3>>{shlex.quote(stderr)}" if stderr else "3>&2"
    tool_stdout = f" >>{shlex.quote(stdout)}" if stdout else ""
    # the subshell forks and applies the tool's redirections in the child only: the shell's own
    # report of the child's end stays on its /dev/null. `; exit $?`: no shell may exec the
    # subshell or the tool in its own place (bash and busybox do so for a script's last command)
    script = f'exec {tool_stderr} 2>/dev/null; (exec "$@"{tool_stdout} 2>&3 3>&-); exit $?'
    return [SHELL, "-c", script, NAME, *argv]


def in_container(argv: list[str] | tuple[str, ...], *, stdout: str = "", stderr: str = "") -> list[str]:
    """A container's command for `argv`: PID 1 is a shell whose child is the shell that waits for the tool."""
    return run_as_child(run_as_child(argv), stdout=stdout, stderr=stderr)


def signal_in(exit_code: int) -> int | None:
    """The signal N a tool died by, read from the 128 + N its shell reported; None for the tool's
    own exit code (a code above 159, such as perl's die's 255, is never a signal's)."""
    return exit_code - 128 if 128 < exit_code < 160 else None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
