"""What the backend tests share: a job spec in a temporary attempt directory, and waiting for its end."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from calculations.tools import get_tool
from demo.synthetic import fasta
from emgapiv2.config import BASE_DIR
from workflows.backends import ExecutionBackend, JobSpec, JobState

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
