"""Prodigal: prokaryotic gene calling on a FASTA of contigs."""

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from calculations.tools import ContainerImage, InputRole, OutputRole, Resources, ToolParams, ToolSpec

# NCBI genetic codes Prodigal accepts
TRANSLATION_TABLES = frozenset({1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 21, 22, 23, 24, 25})


class ProdigalParams(ToolParams):
    mode: Literal["single", "meta"] = Field(
        "single", description="'single' trains on the input genome (needs 20 kbp or more); 'meta' for metagenomes."
    )
    translation_table: int = Field(11, description="NCBI genetic code (single mode only).")

    @model_validator(mode="after")
    def _check_table(self) -> "ProdigalParams":
        if self.translation_table not in TRANSLATION_TABLES:
            raise ValueError(
                f"translation_table {self.translation_table} is not one Prodigal supports "
                f"({', '.join(map(str, sorted(TRANSLATION_TABLES)))})"
            )
        if self.mode == "meta" and self.translation_table != 11:
            raise ValueError("translation_table can only be set in single mode")
        return self


def build_argv(params: ProdigalParams, inputs: Mapping[str, Path]) -> list[str]:
    argv = ["prodigal", "-q", "-i", str(inputs["contigs"]), "-a", "proteins.faa", "-f", "gff", "-o", "genes.gff"]
    argv += ["-p", params.mode]
    if params.mode == "single":
        argv += ["-g", str(params.translation_table)]
    return argv


TOOL = ToolSpec(
    name="prodigal",
    version="2.6.3",
    description="Predict protein-coding genes in prokaryotic contigs.",
    params_model=ProdigalParams,
    inputs=(InputRole("contigs", "Nucleotide contigs (FASTA).", ("fasta",)),),
    outputs=(
        OutputRole("proteins", "Translated genes (protein FASTA).", "proteins.faa", "fasta"),
        OutputRole("genes", "Gene coordinates (GFF3).", "genes.gff", "gff"),
    ),
    build_argv=build_argv,
    executable="prodigal",
    image=ContainerImage("emgapi/prodigal:2.6.3", Path(__file__).parent),
    # single-threaded: more CPUs would idle
    resources=Resources(cpus=1, memory_mb=1024, time_limit_seconds=3600, max_cpus=1, max_memory_mb=8192),
)
