"""Crates checked by roc-validator, offline (calculations/tests/crate_validation.py). The harness
itself, on crates made by hand: it accepts a conforming Process Run Crate, as a directory and as a
zip, and the README's example (docs/crates/prodigal); it names what a broken one lacks; and it never
reaches the network (a context that is not vendored is refused and named). Then every kind of run
the platform exports, made through the actions (calculations/tests/crate_runs.py), with each `data`
choice, against its profile; the same kinds run for real through the API are
workflows/tests/test_crate_validation.py."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model

from calculations.crates import CrateKind, DataPolicy, write_crate
from calculations.tests.crate_runs import (
    GENOME,
    finished_map,
    finished_pipeline,
    finished_tes_task,
    finished_tool_calculation,
    upload,
)
from calculations.tests.crate_validation import PROCESS_RUN, PROVENANCE_RUN, WORKFLOW_RUN, validate_crates
from emgapiv2.config import BASE_DIR

# the validator runs in its own virtualenv, which `task test` makes beside the images: in time for
# the integration tier, not the unit tier; these need nothing else, and run beside that tier
pytestmark = pytest.mark.crate_validator

CC_BY = "https://spdx.org/licenses/CC-BY-4.0"
FILES = {"genome.fna": b">c1\nATGAAATAG\n", "proteins.faa": b">c1_1\nMK*\n"}


def _process_run_crate() -> dict[str, Any]:
    """A small Process Run Crate 0.5: one prodigal run, its input and its output."""
    files = [{"@id": name, "@type": "File", "name": name, "contentSize": len(data)} for name, data in FILES.items()]
    return {
        "@context": ["https://w3id.org/ro/crate/1.1/context", "https://w3id.org/ro/terms/workflow-run/context"],
        "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"},
             "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}},
            {"@id": "./", "@type": "Dataset", "name": "prodigal on genome.fna", "description": "A hand-made crate",
             "datePublished": "2026-12-04T13:00:00+00:00", "license": {"@id": CC_BY},
             "conformsTo": {"@id": "https://w3id.org/ro/wfrun/process/0.5"},
             "hasPart": [{"@id": name} for name in FILES], "mentions": {"@id": "#run"}},
            {"@id": "https://w3id.org/ro/wfrun/process/0.5", "@type": "CreativeWork", "name": "Process Run Crate",
             "version": "0.5"},
            {"@id": CC_BY, "@type": "CreativeWork", "name": "Creative Commons Attribution 4.0"},
            {"@id": "#prodigal", "@type": "SoftwareApplication", "name": "prodigal", "softwareVersion": "2.6.3",
             "url": "https://github.com/hyattpd/Prodigal"},
            {"@id": "#run", "@type": "CreateAction", "name": "prodigal on genome.fna",
             "instrument": {"@id": "#prodigal"}, "object": [{"@id": "genome.fna"}],
             "result": [{"@id": "proteins.faa"}], "startTime": "2026-12-04T12:59:00+00:00",
             "endTime": "2026-12-04T12:59:03+00:00", "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
             "agent": {"@id": "#alice"}},
            {"@id": "#alice", "@type": "Person", "name": "alice"},
            *files,
        ],
    }  # fmt: skip


def _write(directory: Path, metadata: dict[str, Any]) -> Path:
    directory.mkdir()
    (directory / "ro-crate-metadata.json").write_text(json.dumps(metadata, indent=2))
    for name, data in FILES.items():
        (directory / name).write_bytes(data)
    return directory


def _zip(directory: Path) -> Path:
    path = directory.with_suffix(".crate.zip")
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(directory.iterdir()):
            archive.write(file, file.name)
    return path


def test_the_harness_accepts_a_conforming_crate_and_names_what_a_broken_one_lacks(tmp_path: Path) -> None:
    good = _write(tmp_path / "good", _process_run_crate())
    no_instrument = _process_run_crate()
    run = next(entity for entity in no_instrument["@graph"] if entity["@id"] == "#run")
    del run["instrument"]
    elsewhere = copy.deepcopy(_process_run_crate())
    elsewhere["@context"] = ["https://example.org/not-vendored/context"]
    reports = validate_crates([
        (good, PROCESS_RUN),
        (BASE_DIR / "docs" / "crates" / "prodigal", PROCESS_RUN),  # the README's example
        (_zip(good), PROCESS_RUN),
        (_write(tmp_path / "no-instrument", no_instrument), PROCESS_RUN),
        (_write(tmp_path / "elsewhere", elsewhere), PROCESS_RUN),
    ])  # fmt: skip
    as_directory, example, as_zip, broken, unvendored = reports
    assert as_directory.is_valid, as_directory
    assert example.is_valid, example
    assert as_zip.is_valid, as_zip
    assert not as_directory.refused and not as_zip.refused  # everything it asked for was vendored

    assert not broken.is_valid and broken.error is None
    assert {issue.severity for issue in broken.issues} == {"REQUIRED"}
    assert any("instrument" in issue.message for issue in broken.issues), broken

    # offline: the context that is not vendored is refused, named, and the crate is not accepted
    assert not unvendored.is_valid
    assert any("https://example.org/not-vendored/context" in url for url in unvendored.refused), unvendored


@pytest.mark.django_db
def test_every_kind_of_run_exports_a_crate_its_profile_accepts(tmp_path: Path) -> None:
    owner = get_user_model().objects.create(username="carol").pk
    genome = upload(owner, "genome.fna", GENOME)
    calculations = {
        "prodigal": finished_tool_calculation(owner, "prodigal", {"contigs": genome.id}, {}),
        "failed": finished_tool_calculation(owner, "prodigal", {"contigs": genome.id}, {}, state="EXECUTOR_ERROR"),
        "tes-task": finished_tes_task(owner),
    }
    workflow_runs = {
        "pipeline": finished_pipeline(owner),
        "failed-pipeline": finished_pipeline(owner, hits_fail=True),
        "map": finished_map(owner, 3),
    }
    crates: list[tuple[Path, str]] = []

    def export(kind: CrateKind, name: str, run_id: UUID, data: DataPolicy, profile: str) -> None:
        path = tmp_path / f"{name}-{data}.crate.zip"
        write_crate(kind, run_id, data, path)
        crates.append((path, profile))

    for name, calc in calculations.items():
        export("calculation", name, calc.id, "all", PROCESS_RUN)
    for name, run in workflow_runs.items():
        export("workflow-run", name, run.id, "all", PROVENANCE_RUN)
    # without their files (listed with their download URLs: web data entities)
    export("calculation", "prodigal", calculations["prodigal"].id, "none", PROCESS_RUN)
    export("workflow-run", "pipeline", workflow_runs["pipeline"].id, "none", PROVENANCE_RUN)
    # a workflow run's crate is a Workflow Run Crate too (the Provenance Run Crate profile extends it)
    crates.append((tmp_path / "pipeline-all.crate.zip", WORKFLOW_RUN))
    reports = validate_crates(crates)
    invalid = [report for report in reports if not report.is_valid]
    assert not invalid, "\n\n".join(str(report) for report in invalid)
    assert not any(report.refused for report in reports)  # offline: everything it asked for was vendored
