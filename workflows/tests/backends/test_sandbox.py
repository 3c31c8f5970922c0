"""The local backend's sandbox, checked from inside: a tool sees its own directories and nothing of
the platform, writes nowhere else, reaches no network, runs unprivileged, and dies with the worker."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emgapiv2.config import BASE_DIR, get_settings
from workflows.backends import BackendUnavailable, JobSpec, JobStatus, LocalBackend
from workflows.backends.sandbox import Sandbox
from workflows.tests.backends.jobs import processes_running


@pytest.fixture
def attempt(tmp_path: Path) -> Iterator[Path]:
    """An attempt directory as the worker makes it: private (0700), with work/ and inputs/."""
    base = tmp_path / "attempt-1"
    (base / "work").mkdir(parents=True)
    (base / "inputs" / "text").mkdir(parents=True)
    (base / "inputs" / "text" / "in.txt").write_text("input\n")
    for path in (tmp_path, base):
        path.chmod(0o700)
    yield base


def _run(attempt: Path, script: str, *, network: bool = False) -> tuple[int | None, str]:
    spec = JobSpec(
        argv=["bash", "-c", script],
        workdir=attempt / "work",
        stdout_path=attempt / "stdout.txt",
        stderr_path=attempt / "stderr.txt",
        inputs_dir=attempt / "inputs",
        network=network,
    )

    async def run() -> int | None:
        backend = LocalBackend()
        state = await backend.wait(await backend.submit(spec), 30)
        return state.exit_code

    code = asyncio.run(run())
    return code, spec.stdout_path.read_text() + spec.stderr_path.read_text()


def test_a_tool_reads_its_inputs_and_writes_only_its_working_directory(attempt: Path) -> None:
    code, output = _run(
        attempt,
        "cat ../inputs/text/in.txt; echo out > result.txt && echo wrote-work;"
        "echo x > ../inputs/text/in.txt || echo inputs-read-only;"
        "echo x > ../escape.txt || echo attempt-dir-closed;"
        "echo x > /etc/escape || echo etc-read-only;"
        "echo x > /tmp/scratch && echo private-tmp",
    )
    assert code == 0, output
    for line in ("input", "wrote-work", "inputs-read-only", "attempt-dir-closed", "etc-read-only", "private-tmp"):
        assert line in output.split(), output
    assert (attempt / "work" / "result.txt").read_text() == "out\n"
    assert (attempt / "inputs" / "text" / "in.txt").read_text() == "input\n"
    assert not (attempt / "escape.txt").exists() and not Path("/etc/escape").exists()
    assert not Path("/tmp/scratch").exists() or Path("/tmp/scratch").read_text() != "x\n"


def test_the_platforms_data_secrets_and_other_calculations_are_invisible(attempt: Path) -> None:
    data_dir = get_settings().data_dir
    neighbour = attempt.parent / "attempt-0" / "work"
    neighbour.mkdir(parents=True)
    (neighbour / "theirs.txt").write_text("another calculation's data\n")
    code, output = _run(
        attempt,
        f"for p in {data_dir} {data_dir}/secrets {BASE_DIR} {BASE_DIR}/var {neighbour} /root /home; do "
        '  if [ -e "$p" ] && ls "$p" >/dev/null 2>&1 && [ -n "$(ls -A "$p")" ]; then echo "VISIBLE $p"; fi; '
        "done; echo checked",
    )
    assert code == 0 and "checked" in output, output
    assert "VISIBLE" not in output, output


def test_a_tool_reaches_no_network_unless_it_declares_one(attempt: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = f"(echo hi > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo CONNECTED || echo refused"
        code, output = _run(attempt, probe)
        assert code == 0 and "refused" in output and "CONNECTED" not in output, output
        code, output = _run(attempt, probe, network=True)  # a tool that declares it needs the network
        assert "CONNECTED" in output, output


@pytest.mark.skipif(os.geteuid() != 0, reason="a worker that is not root runs tools as itself")
def test_a_root_worker_runs_tools_as_an_unprivileged_user(attempt: Path) -> None:
    code, output = _run(attempt, "id -u; grep CapEff /proc/self/status")
    uid, capabilities = output.split()[0], output.split()[-1]
    assert code == 0 and int(uid) == pwd.getpwnam(get_settings().execution.sandbox_user).pw_uid != 0
    assert int(capabilities, 16) == 0  # no capability at all


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import django
    django.setup()
    from workflows.backends import JobSpec, LocalBackend
    base = Path(sys.argv[1])

    async def main():
        spec = JobSpec(argv=["sleep", "62.375"], workdir=base / "work", stdout_path=base / "o",
                       stderr_path=base / "e", inputs_dir=base / "inputs")
        handle = await LocalBackend().submit(spec)
        print("started", handle.job_id, handle.details["start_ticks"], flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def test_a_tool_dies_with_its_worker(attempt: Path) -> None:
    """bwrap's --die-with-parent takes the tool along, nearly always. bwrap has a race in which the
    sandbox's inner process outlives its outer one: then the tool's process group is orphaned, and
    the next worker's liveness pass kills it (`lost_attempts.kill_local_orphan`, which finds the
    group by `identity.group_members`). Either way no tool outlives its worker for long."""
    from workflows.identity import group_members

    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(attempt)], cwd=BASE_DIR, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    word, pgid, start_ticks = worker.stdout.readline().split()
    assert word == "started"
    deadline = time.monotonic() + 5
    while not _sleepers() and time.monotonic() < deadline:  # the sandbox is up and the tool runs
        time.sleep(0.05)
    assert _sleepers()
    worker.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel must take the tool along
    worker.wait()
    deadline = time.monotonic() + 3
    while _sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    if _sleepers():  # bwrap's race: what the liveness pass of the next worker finds and kills
        survivors = group_members(int(pgid), start_ticks)
        assert {str(pid) for pid in survivors} >= set(_sleepers())
        os.killpg(int(pgid), signal.SIGKILL)
        time.sleep(0.2)
    assert not _sleepers()


def _sleepers() -> list[str]:
    return [str(pid) for pid in processes_running("62.375")]


def test_without_bubblewrap_the_local_backend_refuses_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else which(name, *a, **k))
    with pytest.raises(BackendUnavailable, match="bubblewrap .* is not installed.*ALLOW_UNSANDBOXED"):
        LocalBackend()
    assert Sandbox.from_settings("nobody", allow_unsandboxed=True) is None  # the explicit, logged choice


def test_a_signal_inside_the_sandbox_is_reported_as_one(attempt: Path) -> None:
    spec = JobSpec(
        argv=["bash", "-c", "kill -SEGV $$"], workdir=attempt / "work", stdout_path=attempt / "o",
        stderr_path=attempt / "e", inputs_dir=attempt / "inputs",
    )  # fmt: skip

    async def run() -> None:
        backend = LocalBackend()
        state = await backend.wait(await backend.submit(spec), 10)
        assert state.status is JobStatus.FAILED and state.message == "killed by SIGSEGV" and state.exit_code == 139

    asyncio.run(run())


def test_a_tools_parent_is_a_shell_not_the_sandboxs_pid_1(attempt: Path) -> None:
    """bwrap's init is PID 1: a tool that is its child takes itself for a daemon (HMMER then sends
    its last words to syslog, which the sandbox has not). The shell between them says nothing."""
    code, output = _run(attempt, 'echo "parent $PPID"; echo last words >&2; kill -ABRT $$')
    assert code == 134 and output == "parent 2\nlast words\n"  # no "Aborted" from the shell


def test_shared_memory_works_and_high_exit_codes_are_the_tools_own(attempt: Path) -> None:
    code, output = _run(attempt, "echo x > /dev/shm/lock && echo shm-ok; exit 255")
    assert "shm-ok" in output and code == 255  # not "killed by signal 127"
