"""Reading a crate that an instance of this platform exported, to run it here (POST /crates): the zip
checked against its bounds before and while it is read, ro-crate-metadata.json checked against what
`calculations/crates/` writes, and the run it describes as a `CratePlan` the import action carries
out (`calculations/actions/imports.py`). Every problem is gathered, not only the first: the 422 lists
them all. Nothing here writes anything but the files it is handed.

A zip's entries must be plain files and folders at relative paths (no absolute path, no `..`, no
backslash, no link, no name twice), as many and as big as the settings allow; an entry's ratio of
unzipped to zipped bytes is bounded (entries over 1 MiB, and the zip as a whole by its own size: its
entries may share their compressed bytes), and the bytes read are counted against the sizes the
headers declare, so a header that lies is caught as it is read. Its table of entries (the central
directory) is measured and counted before `zipfile` parses it, which makes an object of every entry
listed: a small zip may list millions."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal
from urllib.parse import unquote

from calculations.crates.graph import METADATA_FILE, PROCESS_RUN_CRATE, WORKFLOW_RUN_CRATE, Entity, status
from calculations.tes import TES_TOOL
from calculations.verdicts import ExpectedStep, expected_outputs, step_key
from calculations.workflow_params import PIPELINE
from emgapiv2.config import CrateSettings

CENTRAL_ENTRY_BYTES = 4096  # the table's bytes allowed per entry: a path as long as Linux allows (PATH_MAX)
RATIO_FLOOR_BYTES = 1024**2  # a smaller entry may compress as well as it likes (a run of one letter)
_CHUNK = 1024**2
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"orchestrate (.+)\[(\d+)\]")
_COMPLETED = status("CompletedActionStatus")
_SHOWN = 200  # characters of a name from the crate a problem quotes
_SOURCE_CHARS = 2000  # of the URL of the run a crate records (browsers' limit)
_BYTES_PER_OBJECT, _BYTES_PER_MEMBER = 64, 24  # the JSON read: half as dense as an exported crate's, at most


def shown(text: object) -> str:
    """A value from the crate as a problem quotes it: bounded, its control characters escaped."""
    return repr(str(text)[:_SHOWN])


class CrateRefused(Exception):
    """The crate cannot be read any further (not a zip, no metadata): the problems so far."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- the zip --------------------------------------------------------------------------------------


def _path_problem(name: str) -> str | None:
    if "\\" in name:
        return "has a backslash in its path"
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return "has a control character in its path"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "leaves the crate (a '..' in its path)"
    if name.strip("/") == "" or "//" in name:
        return "has an empty path segment"
    return None


@dataclass
class CrateZip:
    """An imported zip, its entries checked: `entries` by path (folders left out)."""

    archive: zipfile.ZipFile
    entries: dict[str, zipfile.ZipInfo]
    limits: CrateSettings
    unzipped: int = 0  # bytes read out of it so far, against limits.import_max_unzipped_bytes

    def close(self) -> None:
        self.archive.close()

    def read(self, path: str, sink: IO[bytes] | None = None, *, limit: int | None = None) -> tuple[str, int]:
        """Read an entry (into `sink`, if given): its sha256 and size. ValueError names what is wrong:
        more bytes than its header says or than `limit`, a ratio past the bound, bytes that do not unzip."""
        info = self.entries[path]
        digest, size = hashlib.sha256(), 0
        bound = info.file_size if limit is None else min(info.file_size, limit)
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    self.unzipped += len(chunk)
                    if size > bound:
                        what = "the limit" if limit is not None and size > limit else "its header says"
                        raise ValueError(f"entry {shown(path)} holds more bytes than {what}")
                    if self.unzipped > self.limits.import_max_unzipped_bytes:
                        raise ValueError(
                            f"the zip unzips to more than {self.limits.import_max_unzipped_bytes} bytes "
                            "(EMGAPI_CRATE__IMPORT_MAX_UNZIPPED_BYTES)"
                        )
                    if size > RATIO_FLOOR_BYTES and size > self.limits.import_max_ratio * max(info.compress_size, 1):
                        raise ValueError(f"entry {shown(path)} unzips past the highest ratio allowed (a zip bomb?)")
                    digest.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"entry {shown(path)} cannot be unzipped ({exc})") from None
        if size != info.file_size:
            raise ValueError(f"entry {shown(path)} holds {size} bytes, its header says {info.file_size}")
        return digest.hexdigest(), size


_END = struct.Struct("<4s4H2LH")  # the end of central directory record: the table's size is [5]
_END64_LOCATOR = 20  # bytes of the zip64 end record's locator, just before the end record
_END64 = struct.Struct("<4sQ2H2L4Q")  # the zip64 end record, before its locator: the size is [8]
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # an entry in the table: its name, extra and comment lengths [12:15]


def _central_directory(stream: IO[bytes]) -> tuple[int, int] | None:
    """(offset, size) of the zip's table of entries as its end record says (where `zipfile` reads it);
    None if there is no end record (then `zipfile` says what is wrong)."""
    end = stream.seek(0, io.SEEK_END)
    start = max(0, end - _END.size - (1 << 16))  # (the record ends with a comment of up to 64 KiB)
    stream.seek(start)
    tail = stream.read()
    at = len(tail) - _END.size  # where a record without a comment is, as `zipfile` looks first
    if not (at >= 0 and tail[at : at + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        return None
    size, location = _END.unpack_from(tail, at)[5], start + at
    if location >= _END64_LOCATOR + _END64.size:
        stream.seek(location - _END64_LOCATOR - _END64.size)
        record = stream.read(_END64.size + 4)
        if record[:4] == b"PK\x06\x06" and record[_END64.size :] == b"PK\x06\x07":
            size, location = _END64.unpack_from(record)[8], location - _END64_LOCATOR - _END64.size
    return location - size, size


def _count_entries(path: Path, limits: CrateSettings) -> None:
    """CrateRefused if the zip's table of entries is larger, or lists more entries, than the limits allow:
    looked at one entry's header at a time, before `zipfile` reads the whole table and makes an object
    of each entry (a 50 MB zip of nothing but a table lists a million: 12 s and 400 MB to parse)."""
    most = limits.import_max_entries
    with path.open("rb") as stream:
        found = _central_directory(stream)
        if found is None or found[0] < 0:
            return
        offset, size = found
        if size > most * CENTRAL_ENTRY_BYTES:
            raise CrateRefused(
                [f"the zip's table of entries is {size} bytes; at most {most * CENTRAL_ENTRY_BYTES} are allowed "
                 f"({CENTRAL_ENTRY_BYTES} for each of EMGAPI_CRATE__IMPORT_MAX_ENTRIES, {most})"]
            )  # fmt: skip
        stream.seek(offset)
        count = read = 0
        while read + _CENTRAL.size <= size:
            header = stream.read(_CENTRAL.size)
            if len(header) < _CENTRAL.size or header[:4] != b"PK\x01\x02":
                return  # (`zipfile` says what is wrong)
            skip = sum(_CENTRAL.unpack(header)[12:15])
            stream.seek(skip, io.SEEK_CUR)
            read += _CENTRAL.size + skip
            count += 1
            if count > most:
                what = f"the zip has more than {most} entries; at most {most} are allowed"
                raise CrateRefused([f"{what} (EMGAPI_CRATE__IMPORT_MAX_ENTRIES)"])


def open_crate_zip(path: Path, limits: CrateSettings) -> tuple[CrateZip, list[str]]:
    """The zip and every problem its headers show; CrateRefused if it is no zip at all, or its
    entries are too many to look at."""
    try:
        _count_entries(path, limits)
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CrateRefused([f"the upload is not a zip file ({exc})"]) from None
    infos = archive.infolist()
    if len(infos) > limits.import_max_entries:
        archive.close()
        raise CrateRefused(
            [f"the zip has {len(infos)} entries; at most {limits.import_max_entries} are allowed "
             "(EMGAPI_CRATE__IMPORT_MAX_ENTRIES)"]
        )  # fmt: skip
    problems: list[str] = []
    entries: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    zipped = max(path.stat().st_size, 1)
    declared = compressed = 0
    for info in infos:
        name = info.filename
        if problem := _path_problem(name):
            problems.append(f"entry {shown(name)} {problem}")
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(f"entry {shown(name)} is a symbolic link")
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # (0: permissions only, as this platform writes)
            problems.append(f"entry {shown(name)} is not a plain file or folder")
            continue
        key = name.rstrip("/")
        if key in seen:
            problems.append(f"entry {shown(name)} is in the zip twice")
            continue
        seen.add(key)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            problems.append(f"entry {shown(name)} is encrypted")
            continue
        declared += info.file_size
        compressed += info.compress_size
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.import_max_ratio * max(info.compress_size, 1):
            problems.append(
                f"entry {shown(name)} unzips to {info.file_size} bytes from {info.compress_size}: past the highest "
                f"ratio allowed, {limits.import_max_ratio:g} (a zip bomb?)"
            )
            continue
        entries[name] = info
    if declared > limits.import_max_unzipped_bytes:
        problems.append(
            f"the zip's entries hold {declared} bytes unzipped; at most {limits.import_max_unzipped_bytes} are "
            "allowed (EMGAPI_CRATE__IMPORT_MAX_UNZIPPED_BYTES)"
        )
    elif declared > RATIO_FLOOR_BYTES and declared > limits.import_max_ratio * min(compressed, zipped):
        # its own size, not only the sum of its entries': entries may share their bytes (overlap)
        problems.append(
            f"the zip unzips to {declared} bytes from {min(compressed, zipped)}: past the highest ratio allowed"
        )
    return CrateZip(archive, entries, limits), problems


def read_metadata(crate: CrateZip) -> dict[str, Entity]:
    """ro-crate-metadata.json's graph, by @id; CrateRefused if there is none to read."""
    if METADATA_FILE not in crate.entries:
        raise CrateRefused([f"the zip has no {METADATA_FILE} at its root: it is not an RO-Crate"])
    limit = crate.limits.import_max_metadata_bytes
    sink = io.BytesIO()
    try:
        crate.read(METADATA_FILE, sink, limit=limit)
        document = _parse_json(sink.getvalue(), limit)
    except ValueError as exc:  # (json's errors, UnicodeDecodeError and the read's are ValueErrors)
        raise CrateRefused([f"{METADATA_FILE} cannot be read: {exc}"]) from None
    except RecursionError:
        raise CrateRefused([f"{METADATA_FILE} is nested too deeply"]) from None
    graph = document.get("@graph") if isinstance(document, dict) else None
    if not isinstance(graph, list):
        raise CrateRefused([f"{METADATA_FILE} has no @graph list: it is not RO-Crate JSON-LD"])
    by_id: dict[str, Entity] = {}
    problems: list[str] = []
    for entity in graph:
        if not isinstance(entity, dict) or not isinstance(entity.get("@id"), str):
            problems.append(f"{METADATA_FILE}: an entity of its @graph has no @id")
            continue
        if entity["@id"] in by_id:
            problems.append(f"{METADATA_FILE}: entity {shown(entity['@id'])} is described twice")
        by_id[entity["@id"]] = entity
    if problems:
        raise CrateRefused(problems[:20])
    return by_id


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_json(data: bytes, limit: int) -> Any:
    """JSON of up to `limit` bytes, refused as it is parsed once it holds more objects or members than
    that many bytes of an exported crate's metadata do (about one object per 120 bytes, one member per
    45): 64 MiB of tiny objects ({"@id": "#1"}, one per 17 bytes) took 10 s and 1.3 GB to parse."""
    most_objects, most_members = limit // _BYTES_PER_OBJECT, limit // _BYTES_PER_MEMBER
    objects = members = 0

    def counted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal objects, members
        objects += 1
        members += len(pairs)
        if objects > most_objects or members > most_members:
            raise ValueError(
                f"it holds more than {most_objects} objects or {most_members} members, more than an exported "
                f"crate's {limit} bytes do (EMGAPI_CRATE__IMPORT_MAX_METADATA_BYTES)"
            )
        return dict(pairs)

    return json.loads(data, object_pairs_hook=counted, parse_constant=_no_constant)


# --- the graph ------------------------------------------------------------------------------------


def _ids(value: Any) -> list[str]:
    """The @ids a property refers to (one reference, or a list of them)."""
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [item["@id"] for item in items if isinstance(item, dict) and isinstance(item.get("@id"), str)]


def _types(entity: Entity) -> set[str]:
    value = entity.get("@type")
    return (
        {value}
        if isinstance(value, str)
        else {t for t in value if isinstance(t, str)}
        if isinstance(value, list)
        else set()
    )


def _local_parts(entity_id: str, prefix: str, count: int) -> list[str] | None:
    """The unquoted parts of a local id `#prefix/a/b…` of `count` parts after the prefix, else None."""
    if not entity_id.startswith(f"#{prefix}/"):
        return None
    parts = entity_id[len(prefix) + 2 :].split("/")
    return [unquote(part) for part in parts] if len(parts) == count else None


@dataclass(frozen=True)
class CrateFile:
    """A file the crate describes: `path` is its entry in the zip when the crate holds its bytes."""

    entity_id: str
    name: str
    sha256: str
    size: int | None  # None: deleted where it ran, only its sha256 recorded
    path: str | None
    identifier: str  # its id where it was exported ("" if not given)


@dataclass
class ToolRun:
    """One CreateAction of a tool: what to run again, and what it made."""

    action_id: str
    tool: str
    version: str
    image: str | None = None
    image_digest: str | None = None
    inputs: dict[str, CrateFile] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    outputs: list[tuple[str, CrateFile]] = field(default_factory=list)  # (role, file)
    completed: bool = False
    step: str = ""
    index: int = 0

    def expected(self) -> dict[str, Any]:
        """Its outputs as an expectation ({role: [{name, sha256, size}]})."""
        return expected_outputs(
            {"output_role": role, "name": file.name, "sha256": file.sha256, "size": file.size or 0}
            for role, file in self.outputs
        )


@dataclass
class CratePlan:
    """The run a crate describes, as the import action makes it here."""

    kind: Literal["calculation", "workflow-run"]
    source: str  # the run it records, by its URL where it ran (or the crate's name)
    run: ToolRun | None = None  # a calculation's
    workflow: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # a workflow run's
    flow_sha256: str | None = None  # an ops flow's source, as the crate's workflow version names it
    steps: list[ToolRun] = field(default_factory=list)
    files: dict[str, CrateFile] = field(default_factory=dict)  # a workflow run's, by their ids where it ran

    def expected_steps(self) -> dict[str, Any]:
        """The COMPLETE steps it should reproduce, as `WorkflowRun.expected_steps` holds them."""
        expected: dict[str, Any] = {}
        for run in self.steps:
            if run.completed:
                step = ExpectedStep(step=run.step, index=run.index, tool=run.tool, outputs=run.expected())
                expected[step_key(run.step, run.index)] = step.model_dump(mode="json")
        return expected

    def needed(self) -> Iterator[tuple[str, CrateFile]]:
        """(where, file) of each input it must have: a calculation's by role, a workflow run's own."""
        if self.run is not None:
            yield from ((f"input {shown(role)}", file) for role, file in sorted(self.run.inputs.items()))
        for identifier, file in sorted(self.files.items()):
            yield f"input {shown(file.name)} ({identifier})", file


class _Reader:
    """Reads the graph into a plan, noting each problem."""

    def __init__(self, graph: dict[str, Entity], entries: dict[str, zipfile.ZipInfo]) -> None:
        self.graph = graph
        self.entries = entries
        self.problems: list[str] = []

    def get(self, entity_id: str | None) -> Entity | None:
        return self.graph.get(entity_id) if entity_id is not None else None

    def one(self, value: Any) -> Entity | None:
        ids = _ids(value)
        return self.get(ids[0]) if len(ids) == 1 else None

    def file(self, entity: Entity, where: str, *, deleted_ok: bool = False) -> CrateFile | None:
        sha256, size = entity.get("sha256"), entity.get("contentSize")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            self.problems.append(f"{where}: file {shown(entity['@id'])} has no sha256 (64 hex digits)")
            return None
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
            if not deleted_ok:
                self.problems.append(f"{where}: file {shown(entity['@id'])} has no contentSize")
                return None
            size = None
        entity_id = entity["@id"]
        held = unquote(entity_id)
        path = held if "://" not in entity_id and not entity_id.startswith("#") and held in self.entries else None
        name = entity.get("name") if isinstance(entity.get("name"), str) else PurePosixPath(held).name
        identifier = entity.get("identifier")
        return CrateFile(
            entity_id, str(name or "file"), sha256, size, path, identifier if isinstance(identifier, str) else ""
        )

    def role(self, entity: Entity, tool: str, version: str, kind: str) -> str | None:
        """The role a file or value played, by the tool's FormalParameter it is an example of (of that
        version, else of any: a version not here is named once, by the tool's check)."""
        found = [
            parts
            for entity_id in _ids(entity.get("exampleOfWork"))
            if (parts := _local_parts(entity_id, "tool", 4)) is not None and parts[0] == tool and parts[2] == kind
        ]
        exact = [parts for parts in found if parts[1] == version]
        return (exact or found)[0][3] if exact or found else None

    def tool_run(self, action: Entity, where: str) -> ToolRun | None:
        application = self.one(action.get("instrument"))
        if application is None or "SoftwareApplication" not in _types(application):
            self.problems.append(f"{where}: its instrument is not a SoftwareApplication the crate describes")
            return None
        tool, version = application.get("name"), application.get("softwareVersion")
        if not isinstance(tool, str) or not isinstance(version, str) or not tool or not version:
            self.problems.append(f"{where}: its tool {shown(application['@id'])} has no name or softwareVersion")
            return None
        if len(tool) > _SHOWN or len(version) > _SHOWN:  # (no tool's is: and each problem would quote it whole)
            self.problems.append(f"{where}: its tool's name or softwareVersion is longer than {_SHOWN} characters")
            return None
        run = ToolRun(action_id=action["@id"], tool=tool, version=version)
        run.completed = action.get("actionStatus") == _COMPLETED
        if tool == TES_TOOL:
            return run
        for entity_id in _ids(action.get("object")):
            entity = self.get(entity_id)
            if entity is None:
                self.problems.append(f"{where}: its object {shown(entity_id)} is not described in the crate")
                continue
            if "PropertyValue" in _types(entity):
                self._param(run, entity, where)
            elif "File" in _types(entity):
                role = self.role(entity, tool, version, "inputs")
                if role is None:
                    self.problems.append(f"{where}: input {shown(entity_id)} names no input of {tool} {version}")
                    continue
                found = self.file(entity, f"{where}, input {shown(role)}", deleted_ok=True)
                if found is not None:
                    run.inputs[role] = found
        for entity_id in _ids(action.get("result")):
            entity = self.get(entity_id)
            role = self.role(entity, tool, version, "outputs") if entity is not None else None
            if entity is None or role is None:
                self.problems.append(f"{where}: result {shown(entity_id)} is not an output file of {tool} {version}")
                continue
            if (found := self.file(entity, f"{where}, output {shown(role)}")) is not None:
                run.outputs.append((role, found))
        images = [self.get(entity_id) for entity_id in _ids(action.get("containerImage"))]
        for image in images:
            if image is not None and isinstance(image.get("sha256"), str) and image["sha256"]:
                name, registry, tag = str(image.get("name", "")), str(image.get("registry", "")), image.get("tag")
                prefix = f"{registry}/" if registry and registry != "docker.io" else ""
                run.image = f"{prefix}{name}" + (f":{tag}" if isinstance(tag, str) and tag else "")
                run.image_digest = f"sha256:{image['sha256']}"
        return run

    def _param(self, run: ToolRun, entity: Entity, where: str) -> None:
        name = self.role(entity, run.tool, run.version, "params")
        if name is None:
            return  # a usage figure, or another value that is not the tool's parameter
        value = entity.get("value")
        formal = self.get(_ids(entity.get("exampleOfWork"))[0])
        if isinstance(value, str) and formal is not None and formal.get("additionalType") == "PropertyValue":
            try:  # a list, an object or null is exported as its JSON
                value = json.loads(value)
            except ValueError:
                self.problems.append(f"{where}: parameter {shown(name)} is not the JSON its type says")
                return
        run.params[name] = value


def _base_url(entity_id: str, marker: str) -> str:
    return entity_id.split(marker, 1)[0] if marker in entity_id else ""


def _source(base: str, collection: str, identifier: Any, root: Entity) -> str:
    """The run the crate records, by its URL where it ran (else the crate's name): as long as a URL may
    be, since the new run's first event and the answer quote it."""
    if isinstance(identifier, str) and identifier:
        return f"{base}/api/v2/{collection}/{identifier}"[:_SOURCE_CHARS]
    return str(root.get("name", "./"))[:_SOURCE_CHARS]


def plan_crate(graph: dict[str, Entity], crate: CrateZip) -> tuple[CratePlan | None, list[str]]:
    """The run the crate describes, and every problem found reading it."""
    reader = _Reader(graph, crate.entries)
    problems = reader.problems
    descriptor = graph.get(METADATA_FILE)
    if descriptor is None or "./" not in _ids(descriptor.get("about")):
        problems.append(f"{METADATA_FILE} does not describe itself as the crate's metadata (about ./)")
    elif not any(ref.startswith("https://w3id.org/ro/crate/") for ref in _ids(descriptor.get("conformsTo"))):
        problems.append(f"{METADATA_FILE} does not conform to RO-Crate (conformsTo https://w3id.org/ro/crate/…)")
    root = graph.get("./")
    if root is None or "Dataset" not in _types(root):
        problems.append("the crate has no root dataset (./)")
        return None, problems
    profiles = _ids(root.get("conformsTo"))
    if PROCESS_RUN_CRATE not in profiles:
        problems.append(f"the crate does not conform to the Process Run Crate ({PROCESS_RUN_CRATE})")
        return None, problems
    actions = [entity for entity in graph.values() if "CreateAction" in _types(entity)]
    if WORKFLOW_RUN_CRATE not in profiles:
        if len(actions) != 1:
            problems.append(f"a Process Run Crate of a calculation has one CreateAction; this one has {len(actions)}")
            return None, problems
        run = reader.tool_run(actions[0], "the calculation")
        if run is None:
            return None, problems
        if run.tool == TES_TOOL:
            problems.append(
                "the crate records a GA4GH TES task: it is not imported (a task names its own images and commands; "
                "submit it to /ga4gh/tes/v1/tasks); only a tool's calculation or a workflow run is"
            )
            return None, problems
        base = _base_url(str(_ids(actions[0].get("instrument"))[0]), "/api/v2/tools/")
        source = _source(base, "calculations", actions[0].get("identifier") if base else None, root)
        return CratePlan(kind="calculation", source=source, run=run), problems
    return _plan_workflow_run(reader, root, actions, crate)


def _plan_workflow_run(
    reader: _Reader, root: Entity, actions: list[Entity], crate: CrateZip
) -> tuple[CratePlan | None, list[str]]:
    problems = reader.problems
    main = reader.one(root.get("mainEntity"))
    if main is None or "ComputationalWorkflow" not in _types(main):
        problems.append("the Workflow Run Crate's mainEntity is not a ComputationalWorkflow it describes")
        return None, problems
    runs = [action for action in actions if _ids(action.get("instrument")) == [main["@id"]]]
    if len(runs) != 1:
        problems.append(f"the crate has {len(runs)} CreateActions of its workflow; a workflow run's has one")
        return None, problems
    run_action = runs[0]
    url = str(main.get("url", ""))
    base, _, workflow = url.partition("/api/v2/workflows/")
    workflow = unquote(workflow)
    if not workflow or len(workflow) > _SHOWN:
        problems.append(f"the crate's workflow has no url naming it (…/api/v2/workflows/<name>, {shown(workflow)})")
        return None, problems
    source = _source(base, "workflow-runs", run_action.get("identifier"), root)
    plan = CratePlan(kind="workflow-run", source=source, workflow=workflow)
    if run_action.get("actionStatus") != _COMPLETED:
        problems.append("the crate records a workflow run that did not complete: only a COMPLETE one is run again")
    # the steps: each tool's CreateAction, named by the ControlAction of its step
    controls = {
        object_id: entity
        for entity in reader.graph.values()
        if "ControlAction" in _types(entity)
        for object_id in _ids(entity.get("object"))
    }
    for action in actions:
        if action is run_action:
            continue
        control = controls.get(action["@id"])
        matched = _CONTROL.fullmatch(str(control.get("name", ""))) if control is not None else None
        if matched is None:
            problems.append(f"step action {shown(action['@id'])} has no ControlAction naming its step and index")
            continue
        step = reader.tool_run(action, f"step {matched[1]}[{matched[2]}]")
        if step is not None:
            step.step, step.index = matched[1], int(matched[2])
            plan.steps.append(step)
    # the run's own inputs (the files no step made), by their ids where it ran
    for entity_id in _ids(run_action.get("object")):
        entity = reader.get(entity_id)
        if entity is None or "File" not in _types(entity):
            continue  # a parameter's value
        found = reader.file(entity, "the workflow run's input")
        if found is None:
            continue
        if not found.identifier:
            problems.append(f"the workflow run's input {shown(entity_id)} has no identifier")
            continue
        plan.files[found.identifier] = found
    if workflow == PIPELINE:
        plan.params = _pipeline(reader, main, crate, plan.files)
    else:
        version = str(main.get("version", ""))
        plan.flow_sha256 = version.removeprefix("sha256:") if version.startswith("sha256:") else None
        for entity_id in _ids(run_action.get("object")):
            entity = reader.get(entity_id)
            if entity is not None and "PropertyValue" in _types(entity) and isinstance(entity.get("name"), str):
                plan.params[entity["name"]] = entity.get("value")
    return plan, problems


def _pipeline(reader: _Reader, main: Entity, crate: CrateZip, files: dict[str, CrateFile]) -> dict[str, Any]:
    """The pipeline's JSON (the mainEntity, which the zip always holds); each file it names must be an
    input the crate describes."""
    path = unquote(main["@id"])
    if path not in crate.entries:
        reader.problems.append(f"the zip does not hold the pipeline's JSON, {shown(path)}")
        return {}
    sink = io.BytesIO()
    try:
        crate.read(path, sink, limit=crate.limits.import_max_metadata_bytes)
        params = _parse_json(sink.getvalue(), crate.limits.import_max_metadata_bytes)
    except (ValueError, RecursionError) as exc:
        reader.problems.append(f"the pipeline's JSON {shown(path)} cannot be read: {exc}")
        return {}
    if not isinstance(params, dict):
        reader.problems.append(f"the pipeline's JSON {shown(path)} is not an object")
        return {}
    for file_id in sorted(set(file_refs_in(params))):
        if file_id not in files:
            reader.problems.append(f"the pipeline names file {shown(file_id)}, which the crate does not describe")
    return params


_FILE_REF = re.compile(r"file:([0-9a-fA-F-]{32,36})")


def file_refs_in(value: Any) -> Iterator[str]:
    """The file ids a pipeline's JSON names (`file:<id>`, anywhere in it)."""
    if isinstance(value, str):
        if matched := _FILE_REF.fullmatch(value):
            yield matched[1]
    elif isinstance(value, dict):
        for item in value.values():
            yield from file_refs_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from file_refs_in(item)


def with_file_ids(value: Any, ids: dict[str, str]) -> Any:
    """A pipeline's JSON with each `file:<id>` it names replaced by `file:<ids[id]>`."""
    if isinstance(value, str):
        matched = _FILE_REF.fullmatch(value)
        return f"file:{ids[matched[1]]}" if matched and matched[1] in ids else value
    if isinstance(value, dict):
        return {key: with_file_ids(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [with_file_ids(item, ids) for item in value]
    return value
