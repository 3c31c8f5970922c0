"""The crate validation harness itself (calculations/tests/crate_validation.py), on crates made by hand:
it accepts a conforming Process Run Crate, as a directory and as a zip, names what a broken one
lacks, and never reaches the network: a context that is not vendored is refused and named."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from calculations.tests.crate_validation import PROCESS_RUN, validate_crates

# the validator runs in its own virtualenv, which `task test` makes beside the images: in time for
# the integration tier, not the unit tier
pytestmark = pytest.mark.integration

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
        (_zip(good), PROCESS_RUN),
        (_write(tmp_path / "no-instrument", no_instrument), PROCESS_RUN),
        (_write(tmp_path / "elsewhere", elsewhere), PROCESS_RUN),
    ])  # fmt: skip
    as_directory, as_zip, broken, unvendored = reports
    assert as_directory.is_valid, as_directory
    assert as_zip.is_valid, as_zip
    assert not as_directory.refused and not as_zip.refused  # everything it asked for was vendored

    assert not broken.is_valid and broken.error is None
    assert {issue.severity for issue in broken.issues} == {"REQUIRED"}
    assert any("instrument" in issue.message for issue in broken.issues), broken

    # offline: the context that is not vendored is refused, named, and the crate is not accepted
    assert not unvendored.is_valid
    assert any("https://example.org/not-vendored/context" in url for url in unvendored.refused), unvendored
