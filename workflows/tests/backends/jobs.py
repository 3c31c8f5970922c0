"""What the backend tests share: a job spec in a temporary attempt directory, and waiting for its end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workflows.backends import ExecutionBackend, JobSpec, JobState


def job_spec(tmp_path: Path, argv: list[str], **options: Any) -> JobSpec:
    """A job in `tmp_path` laid out as an attempt: work/, inputs/in.txt, stdout.txt, stderr.txt."""
    for name in ("work", "inputs"):
        (tmp_path / name).mkdir(exist_ok=True)
    if not (tmp_path / "inputs" / "in.txt").exists():
        (tmp_path / "inputs" / "in.txt").write_text("input\n")
    return JobSpec(
        argv=argv,
        workdir=tmp_path / "work",
        stdout_path=tmp_path / "stdout.txt",
        stderr_path=tmp_path / "stderr.txt",
        inputs_dir=tmp_path / "inputs",
        name=f"test-{time.time_ns()}",
        **options,
    )


async def until_final(backend: ExecutionBackend, handle: Any, seconds: float = 60) -> JobState:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = await backend.wait(handle, 1)
        if state.is_final:
            return state
    raise AssertionError(f"job {handle.job_id} still running after {seconds} s")


def processes_running(argument: str) -> list[int]:
    """Live (not zombie) processes of this host with `argument` as a word of their command line:
    a sandboxed tool's pid means nothing outside its pid namespace, so tests find it this way."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                if "State:\tZ" not in (entry / "status").read_text():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found
