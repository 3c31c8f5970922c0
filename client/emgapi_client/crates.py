"""An exported RO-Crate, checked as every download is: each data file the zip holds must hash to the
sha256 its metadata gives it, and no entry may point outside the crate."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote

from emgapi_client.errors import ChecksumMismatch, EmgapiError
from emgapi_client.transfers import CHUNK_BYTES

CrateKind = Literal["calculation", "workflow-run"]
CrateData = Literal["none", "small", "all"]
METADATA_FILE = "ro-crate-metadata.json"


@dataclass(frozen=True)
class CrateSummary:
    """What a crate holds: its data files (each sha256 checked), and those it lists by URL only."""

    path: Path
    held: int
    listed: int
    held_bytes: int
    listed_bytes: int


def _types(entity: dict[str, Any]) -> set[str]:
    kinds = entity.get("@type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def check_crate(path: Path) -> CrateSummary:
    """Check a crate's zip: its metadata is JSON-LD with a @graph, its entries stay inside it, and every
    file it holds has the sha256 and size its metadata says (ChecksumMismatch names the first that
    does not); returns what it holds."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for name in names:
            if name.startswith("/") or ".." in PurePosixPath(name).parts:
                raise EmgapiError(f"{path}: the crate's entry {name!r} points outside it")
        if METADATA_FILE not in names:
            raise EmgapiError(f"{path}: no {METADATA_FILE} at the crate's root")
        graph = json.loads(archive.read(METADATA_FILE)).get("@graph", [])
        held = listed = held_bytes = listed_bytes = 0
        for entity in graph:
            if "File" not in _types(entity) or "sha256" not in entity or "contentSize" not in entity:
                continue
            size = int(entity["contentSize"])
            entry = unquote(str(entity["@id"]))
            if entry not in names:
                listed += 1
                listed_bytes += size
                continue
            digest = hashlib.sha256()
            with archive.open(entry) as data:
                while chunk := data.read(CHUNK_BYTES):
                    digest.update(chunk)
            if digest.hexdigest() != entity["sha256"] or archive.getinfo(entry).file_size != size:
                raise ChecksumMismatch(
                    f"{path}: {entry} hashes to {digest.hexdigest()} ({archive.getinfo(entry).file_size} bytes), "
                    f"its metadata says {entity['sha256']} ({size} bytes)"
                )
            held += 1
            held_bytes += size
    return CrateSummary(path=path, held=held, listed=listed, held_bytes=held_bytes, listed_bytes=listed_bytes)
