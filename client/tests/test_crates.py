"""An exported crate checked on arrival (emgapi_client/crates.py): each file it holds against the
sha256 its metadata gives, and no entry outside it. No server needed."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from emgapi_client.crates import check_crate
from emgapi_client.errors import ChecksumMismatch, EmgapiError

DATA = b">c1\nACGT\n"


def _crate(path: Path, entries: dict[str, bytes], files: list[dict[str, Any]]) -> Path:
    metadata = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": files}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ro-crate-metadata.json", json.dumps(metadata))
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def _file(entity_id: str, content: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(content).hexdigest()
    return {"@id": entity_id, "@type": "File", "sha256": digest, "contentSize": str(len(content))}


def test_a_crate_whose_files_match_their_metadata_is_summed_up(tmp_path: Path) -> None:
    files = [_file("inputs/contigs/my%20genome.fna", DATA), _file("https://x.org/api/v2/files/1/content", b"abc")]
    summary = check_crate(_crate(tmp_path / "c.zip", {"inputs/contigs/my genome.fna": DATA}, files))
    assert (summary.held, summary.held_bytes, summary.listed, summary.listed_bytes) == (1, len(DATA), 1, 3)


def test_a_file_whose_bytes_are_not_its_metadatas_is_refused(tmp_path: Path) -> None:
    crate = _crate(tmp_path / "c.zip", {"outputs/x/x.faa": b"tampered"}, [_file("outputs/x/x.faa", DATA)])
    with pytest.raises(ChecksumMismatch, match="outputs/x/x.faa hashes to"):
        check_crate(crate)


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_an_entry_outside_the_crate_is_refused(tmp_path: Path, entry: str) -> None:
    with pytest.raises(EmgapiError, match="points outside"):
        check_crate(_crate(tmp_path / "c.zip", {entry: DATA}, []))
