"""HMMER hmmsearch: search a protein FASTA with a profile HMM."""

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from calculations.tools import ContainerImage, InputRole, OutputRole, Resources, ToolParams, ToolSpec


class HmmsearchParams(ToolParams):
    evalue: float = Field(10.0, gt=0, description="Report targets with an E-value at or below this (-E).")


def build_argv(params: HmmsearchParams, inputs: Mapping[str, Path]) -> list[str]:
    return [
        "hmmsearch",
        "--tblout", "hits.tbl",
        "-o", "hmmsearch.txt",
        "-E", repr(params.evalue),
        "--cpu", "1",
        str(inputs["profile"]),
        str(inputs["sequences"]),
    ]  # fmt: skip


TOOL = ToolSpec(
    name="hmmsearch",
    version="3.3.2",
    description="Search protein sequences with a profile hidden Markov model (HMMER).",
    params_model=HmmsearchParams,
    inputs=(
        InputRole("profile", "Profile HMM (HMMER3 format).", ("hmm",)),
        InputRole("sequences", "Protein sequences (FASTA).", ("fasta",)),
    ),
    outputs=(
        OutputRole("hits", "Per-target hits table (--tblout).", "hits.tbl", "text"),
        OutputRole("report", "Full human-readable report.", "hmmsearch.txt", "text"),
    ),
    build_argv=build_argv,
    executable="hmmsearch",
    image=ContainerImage("emgapi/hmmsearch:3.3.2", Path(__file__).parent),
    # run with --cpu 1 (its threads barely help a single search): more CPUs would idle
    resources=Resources(cpus=1, memory_mb=2048, time_limit_seconds=3600, max_cpus=1, max_memory_mb=16384),
)
