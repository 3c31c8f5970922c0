"""What the backend tests share: a job spec in a temporary attempt directory, and waiting for its end."""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from calculations.tools import get_tool
from demo.synthetic import fasta
from emgapiv2.config import BASE_DIR
from workflows.backends import ExecutionBackend, JobSpec, JobState

# A tool that uses CPU (a shell's loop: user time) and memory (dd's one 150 MiB buffer, filled three
# times: mostly system time), the same on every backend's node or image (sh, dd)
MEASURED_TOOL = [
    "sh", "-c",
    "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/dev/null bs=150M count=3 2>/dev/null",
]  # fmt: skip
HMMER_ON_DNA = "Target sequence length > 100K, over comparison pipeline limit.\n(Did you mean to use nhmmer/nhmmscan?)"


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


def hmmsearch_on_dna(tmp_path: Path, **options: Any) -> JobSpec:
    """The registered hmmsearch given a profile and, for proteins, a 120 kbp contig (fixed seed):
    a user's mistake that HMMER explains (`HMMER_ON_DNA`) on stderr before it aborts."""
    spec = job_spec(tmp_path, [], **options)
    assert spec.inputs_dir is not None
    profile, contig = spec.inputs_dir / "family.hmm", spec.inputs_dir / "contig.fna"
    shutil.copy(BASE_DIR / "demo" / "data" / "family.hmm", profile)
    rng = random.Random(17)
    contig.write_text(fasta({"contig_1": "".join(rng.choice("ACGT") for _ in range(120_000))}))
    tool = get_tool("hmmsearch")
    argv = tool.build_argv(tool.params_model(), {"profile": profile, "sequences": contig})
    return replace(spec, argv=argv)


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


def bare_usage(argv: list[str], runs: int = 3) -> dict[str, float]:
    """`argv` run bare under GNU time (/usr/bin/time), the median of `runs`: what a backend should
    measure of it."""
    measured: dict[str, list[float]] = {"user_cpu_seconds": [], "system_cpu_seconds": [], "max_rss_mb": []}
    for _ in range(runs):
        result = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *argv], capture_output=True, text=True, check=True)
        user, system, max_rss_kb = result.stderr.split()[-3:]
        measured["user_cpu_seconds"].append(float(user))
        measured["system_cpu_seconds"].append(float(system))
        measured["max_rss_mb"].append(int(max_rss_kb) / 1024)
    return {key: statistics.median(values) for key, values in measured.items()}


def assert_measured_as_bare(measured: dict[str, float], argv: list[str]) -> None:
    """A backend's measure of `argv` agrees with /usr/bin/time's of it run bare: peak memory within
    25 % (or 8 MiB: the shells and the page cache a cgroup counts besides). User CPU time within a
    factor of 1.75 (or 0.06 s: clock ticks), system CPU time within 8: on this 2-core machine, shared
    with other work, the same run's user time varies by up to 60 %, and its system time (dd zeroing
    pages, in a container's memory cgroup) by over 5 times (Podman in CI: 0.80 s against 0.27 bare;
    Docker in CI: 0.48 s against 0.09); measuring the wrong process is off by 100 times."""
    bare = bare_usage(argv)
    print(f"measured {measured}, bare under /usr/bin/time {bare}")  # the figures, with -s
    assert measured.keys() >= {"wall_seconds", "user_cpu_seconds", "system_cpu_seconds", "max_rss_mb"}
    assert abs(measured["max_rss_mb"] - bare["max_rss_mb"]) <= max(0.25 * bare["max_rss_mb"], 8), (measured, bare)
    for key, factor in (("user_cpu_seconds", 1.75), ("system_cpu_seconds", 8)):
        assert bare[key] / factor - 0.06 <= measured[key] <= bare[key] * factor + 0.06, (key, measured, bare)
    cpu = measured["user_cpu_seconds"] + measured["system_cpu_seconds"]
    assert cpu <= measured["wall_seconds"] + 1  # one thread: never more CPU than time (Slurm: whole seconds)
