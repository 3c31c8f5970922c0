"""A run's record as an RO-Crate (design brief §12), following the Workflow Run RO-Crate profiles 0.5
on RO-Crate 1.1: a calculation or a TES task is a Process Run Crate (`calculations.py`), a workflow
run a Workflow Run Crate with a Provenance Run Crate's steps (`workflow_runs.py`); `processes.py`
writes one tool's run for both, `graph.py` what every crate shares, `zips.py` streams the zip.

`data` chooses the files the zip holds: `none`, `small` (the smallest first, up to
EMGAPI_CRATE__MAX_DATA_BYTES in all; the default) or `all`. A file left out is still described, with
its sha256, size and download URL (its @id then). Access is the caller's check (the routes' 404)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal
from uuid import UUID

from calculations.crates.calculations import calculation_crate
from calculations.crates.graph import CrateBuilder, DataPolicy, Entity
from calculations.crates.workflow_runs import workflow_run_crate
from calculations.crates.zips import metadata_chunks, zip_chunks

CrateKind = Literal["calculation", "workflow-run"]
DATA_POLICIES: tuple[DataPolicy, ...] = ("none", "small", "all")

__all__ = [
    "DATA_POLICIES",
    "CrateKind",
    "DataPolicy",
    "crate_chunks",
    "crate_file_name",
    "crate_metadata",
    "write_crate",
]


_KINDS: dict[str, Callable[[CrateBuilder, UUID], Iterator[Entity]]] = {
    "calculation": calculation_crate,
    "workflow-run": workflow_run_crate,
}


def _entities(kind: CrateKind, run_id: UUID, builder: CrateBuilder) -> Iterator[Entity]:
    if kind not in _KINDS:
        raise ValueError(f"unknown kind of run {kind!r}: 'calculation' or 'workflow-run'")
    return _KINDS[kind](builder, run_id)


def crate_chunks(kind: CrateKind, run_id: UUID, data: DataPolicy = "small") -> Iterator[bytes]:
    """The crate's zip, as it is made (a response streams it). The run must exist: the caller
    checked who may see it."""
    builder = CrateBuilder(data=data)
    return (chunk for chunk in zip_chunks(builder, _entities(kind, run_id, builder)) if chunk)


def crate_metadata(kind: CrateKind, run_id: UUID, data: DataPolicy = "small") -> bytes:
    """ro-crate-metadata.json alone, as the zip would hold it (tests, and the bench)."""
    builder = CrateBuilder(data=data)
    return b"".join(metadata_chunks(_entities(kind, run_id, builder)))


def write_crate(kind: CrateKind, run_id: UUID | str, data: DataPolicy, out: Path | str | BinaryIO) -> None:
    """Write a run's crate as a zip to `out` (a path or a binary file): what the routes send."""
    chunks = crate_chunks(kind, UUID(str(run_id)), data)
    if isinstance(out, (str, Path)):
        with open(out, "wb") as target:
            _copy(chunks, target)
    else:
        _copy(chunks, out)


def _copy(chunks: Iterator[bytes], target: BinaryIO) -> None:
    for chunk in chunks:
        target.write(chunk)
    target.flush()


def crate_file_name(kind: CrateKind, run_id: UUID) -> str:
    return f"{kind}-{run_id}.crate.zip"
