"""What every exported crate shares: RO-Crate 1.1 JSON-LD (the version the Workflow Run RO-Crate 0.5
profiles inherit), the metadata descriptor and the root dataset, its license and publisher from
settings, and which data files the zip holds.

The JSON-LD is written by hand rather than with `rocrate` (ro-crate-py): that library writes 1.2 by
default and holds the whole graph in memory, while a 1,000-step map's crate is written here entity
by entity (the root, which lists every part, comes last: a graph's order means nothing).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import quote
from uuid import UUID

from django.utils import timezone

from emgapiv2.config import get_settings

Entity = dict[str, Any]
DataPolicy = Literal["none", "small", "all"]

RO_CRATE = "https://w3id.org/ro/crate/1.1"
WFRUN_TERMS = "https://w3id.org/ro/terms/workflow-run"
CONTEXT = [f"{RO_CRATE}/context", f"{WFRUN_TERMS}/context"]
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW_RUN_CRATE = "https://w3id.org/ro/wfrun/workflow/0.5"
PROVENANCE_RUN_CRATE = "https://w3id.org/ro/wfrun/provenance/0.5"
WORKFLOW_RO_CRATE = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
_PROFILES = {
    PROCESS_RUN_CRATE: ("Process Run Crate", "0.5"),
    WORKFLOW_RUN_CRATE: ("Workflow Run Crate", "0.5"),
    PROVENANCE_RUN_CRATE: ("Provenance Run Crate", "0.5"),
    WORKFLOW_RO_CRATE: ("Workflow RO-Crate", "1.0"),
}
METADATA_FILE = "ro-crate-metadata.json"


def ref(entity_id: str) -> dict[str, str]:
    return {"@id": entity_id}


def refs(entity_ids: Iterable[str]) -> dict[str, str] | list[dict[str, str]]:
    """References to entities: one as a single value, as RO-Crate 1.1 recommends, several as a list."""
    found = [{"@id": entity_id} for entity_id in entity_ids]
    return found[0] if len(found) == 1 else found


def status(state_name: str) -> str:
    """An action's status as the profiles name it (schema.org's ActionStatusType, by its URL)."""
    return f"http://schema.org/{state_name}"


def local_id(*parts: object) -> str:
    """A contextual entity's local identifier (`#a/b`), each part escaped as a URI path segment."""
    return "#" + "/".join(quote(str(part), safe="") for part in parts)


def as_rows(rows: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """`.values()` rows as plain dicts to the type checker (django-stubs types each as a TypedDict)."""
    return iter(rows)


def as_row(row: Any) -> dict[str, Any]:
    return dict(row)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and the offset, as the profiles' checks read a time."""
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


# a file's encodingFormat (a media type) by its name's extension, for the formats tools read and write
_MEDIA_TYPES = {
    **dict.fromkeys((".fa", ".fna", ".faa", ".ffn", ".fasta", ".fas"), "text/x-fasta"),
    **dict.fromkeys((".gff", ".gff3"), "text/x-gff3"),
    **dict.fromkeys((".hmm", ".tbl", ".txt", ".log"), "text/plain"),
    ".smi": "chemical/x-daylight-smiles",
    ".sdf": "chemical/x-mdl-sdfile",
    ".json": "application/json",
}


def media_type(name: str) -> str:
    suffix = PurePosixPath(name.lower()).suffix
    return _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_name(name: str) -> str:
    """A file's name as one path segment in the zip (a stored name is one already; this is the net)."""
    cleaned = "".join("_" if c in "/\\\0" else c for c in name)
    return cleaned if cleaned not in ("", ".", "..") else "file"


def choose_small(files: Iterable[tuple[UUID, int]], limit_bytes: int) -> set[UUID]:
    """The files a `data=small` crate holds: smallest first while their total stays within the limit
    (a deterministic choice: the same run always gives the same crate)."""
    chosen: set[UUID] = set()
    total = 0
    for file_id, size in sorted(set(files), key=lambda item: (item[1], str(item[0]))):
        if total + size > limit_bytes:
            break
        chosen.add(file_id)
        total += size
    return chosen


@dataclass(frozen=True)
class RefStream:
    """A long list of references (a 1,000-step run's files, its steps), read again from the database
    when the metadata is written rather than held: what keeps a big crate's memory flat."""

    ids: Callable[[], Iterable[str]]


@dataclass(frozen=True)
class PayloadFile:
    """A file the zip holds: a blob (by sha256), or bytes made for the crate (a pipeline's JSON)."""

    path: str
    size: int
    sha256: str | None = None
    content: bytes | None = None


@dataclass
class CrateBuilder:
    """One export's shared state: the settings it names, which files it holds (`included`: file ids,
    None for all), and what the root lists once every other entity is written."""

    data: DataPolicy
    included: set[UUID] | None = None
    payload: list[PayloadFile] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # contextual entities shared by many actions, written once
    # False: the files are not gathered as parts; the caller streams them (`closing_entities(more_parts=)`)
    gathers_files: bool = True
    published_at: datetime = field(default_factory=lambda: timezone.now().replace(microsecond=0))

    def __post_init__(self) -> None:
        settings = get_settings()
        self.public_url = settings.public_url.rstrip("/")
        self.license = settings.crate.license
        self.publisher = settings.crate.publisher
        self.publisher_url = (settings.crate.publisher_url or self.public_url).rstrip("/") + "/"

    def download_url(self, file_id: UUID) -> str:
        """The API's download of a file (its owner's token opens it)."""
        return f"{self.public_url}/api/v2/files/{file_id}/content"

    def holds(self, file_id: UUID) -> bool:
        if self.data == "none":
            return False
        return self.included is None or file_id in self.included

    def file_id(self, file_id: UUID, path: str) -> str:
        """A file's @id: its path in the zip if the zip holds it, else its download URL (a web-based
        data entity, which RO-Crate does not require in the payload)."""
        return quote(path) if self.holds(file_id) else self.download_url(file_id)

    def file_entity(
        self, file_id: UUID, *, path: str, name: str, size: int, sha256: str, example_of: Iterable[str] = ()
    ) -> Entity:
        """A file's entity (written once per file): its sha256, size and download URL, whether or not
        the zip holds it; one the zip holds joins the payload."""
        entity_id = self.file_id(file_id, path)
        if self.holds(file_id):
            self.payload.append(PayloadFile(path=path, size=size, sha256=sha256))
        if self.gathers_files:
            self.parts.append(entity_id)
        entity: Entity = {
            "@id": entity_id,
            "@type": "File",
            "name": name,
            "contentSize": str(size),
            "sha256": sha256,
            "encodingFormat": media_type(name),
            "contentUrl": self.download_url(file_id),
            "identifier": str(file_id),
        }
        if not self.holds(file_id):  # a web-based data entity: when its URL was given
            entity["sdDatePublished"] = self.published_at.isoformat()
        if examples := list(example_of):
            entity["exampleOfWork"] = refs(examples)
        return entity

    def content_entity(self, path: str, content: bytes) -> str:
        """A file made for the crate (always held): it joins the payload; returns its @id."""
        self.payload.append(PayloadFile(path=path, size=len(content), content=content))
        entity_id = quote(path)
        self.parts.append(entity_id)
        return entity_id

    def once(self, entity_id: str) -> bool:
        """True the first time `entity_id` is asked about: a shared entity is then written."""
        if entity_id in self.seen:
            return False
        self.seen.add(entity_id)
        return True

    def person(self, username: str) -> Entity:
        """The run's owner, by username only (no email leaves the platform)."""
        return {"@id": local_id("person", username), "@type": "Person", "name": username}

    def closing_entities(
        self,
        *,
        profiles: list[str],
        name: str,
        description: str,
        author: str,
        main_entity: str | None = None,
        more_parts: Callable[[], Iterable[str]] | None = None,
        more_mentions: Callable[[], Iterable[str]] | None = None,
    ) -> list[Entity]:
        """The descriptor, the root dataset (its parts and the actions it mentions, gathered while the
        rest was written), the profiles it conforms to, its license and its publisher."""
        readme = self._readme(name, description, profiles)
        descriptor_conforms = [RO_CRATE] + ([WORKFLOW_RO_CRATE] if WORKFLOW_RO_CRATE in profiles else [])
        root: Entity = {
            "@id": "./",
            "@type": "Dataset",
            "conformsTo": refs(profiles),
            "name": name,
            "description": description,
            "datePublished": self.published_at.isoformat(),
            "author": ref(author),
            "license": ref(self.license),
            "publisher": ref(self.publisher_url),
            "hasPart": refs(self.parts) if more_parts is None else RefStream(lambda: chain(self.parts, more_parts())),
            "mentions": (
                refs(self.mentions)
                if more_mentions is None
                else RefStream(lambda: chain(self.mentions, more_mentions()))
            ),
        }
        if main_entity is not None:
            root["mainEntity"] = ref(main_entity)
        license_name = self.license.rstrip("/").rsplit("/", 1)[-1].removesuffix(".html") or self.license
        return [
            {
                "@id": METADATA_FILE,
                "@type": "CreativeWork",
                "conformsTo": refs(descriptor_conforms),
                "about": ref("./"),
            },
            root,
            *(
                {
                    "@id": profile,
                    "@type": "CreativeWork",
                    "name": _PROFILES[profile][0],
                    "version": _PROFILES[profile][1],
                }
                for profile in profiles
            ),
            {
                "@id": self.license,
                "@type": "CreativeWork",
                "name": license_name,
                "description": f"The license of this crate's metadata and data: {license_name}.",
                "url": self.license,
            },
            {"@id": self.publisher_url, "@type": "Organization", "name": self.publisher, "url": self.publisher_url},
            readme,
        ]

    def _readme(self, name: str, description: str, profiles: list[str]) -> Entity:
        """README.md, for a person who opens the zip (Workflow RO-Crate recommends one)."""
        held = sum(1 for item in self.payload if item.sha256 is not None)
        text = (
            f"# {name}\n\n{description}\n\n"
            f"This is an RO-Crate ({RO_CRATE}) conforming to {', '.join(_PROFILES[p][0] for p in profiles)}: "
            f"ro-crate-metadata.json describes the run, its tools, inputs, parameters and outputs. It holds "
            f"{held} data files; the others it describes are listed by their sha256, size and download URL.\n\n"
            f"Published by {self.publisher} ({self.publisher_url}) on {self.published_at.date()}, "
            f"under {self.license}.\n"
        ).encode()
        entity_id = self.content_entity("README.md", text)
        return {
            "@id": entity_id,
            "@type": "File",
            "name": "README.md",
            "about": ref("./"),
            "encodingFormat": "text/markdown",
            "contentSize": str(len(text)),
        }
