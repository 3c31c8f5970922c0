"""The crate as a zip, streamed: ro-crate-metadata.json first (written entity by entity as the graph
is built), then the data files it holds, each read from storage a chunk at a time. Nothing is
held whole: the zip goes out through an unseekable sink (sizes in data descriptors, as zipfile does
on a pipe), so a response can send it as it is made."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from calculations.crates.graph import CONTEXT, METADATA_FILE, CrateBuilder, Entity, RefStream
from calculations.storage import get_storage

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_ZIP64_LIMIT = (1 << 31) - 1
_REFS_PER_CHUNK = 500


class _Sink(io.RawIOBase):
    """Collects what zipfile writes until the stream takes it; not seekable, so zipfile never seeks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _entry(path: str, moment: datetime, size: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=moment.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    if size is not None:
        info.file_size = size  # zipfile then knows whether the entry needs zip64
    return info


def metadata_chunks(entities: Iterable[Entity]) -> Iterator[bytes]:
    """ro-crate-metadata.json, an entity at a time."""
    yield b'{\n  "@context": ' + json.dumps(CONTEXT).encode() + b',\n  "@graph": [\n'
    first = True
    for entity in entities:
        if not first:
            yield b",\n"
        yield from _entity_chunks(entity)
        first = False
    yield b"\n  ]\n}\n"


def _entity_chunks(entity: Entity) -> Iterator[bytes]:
    """One entity's JSON; a RefStream value is read and written a batch of references at a time."""
    streams = {key: value for key, value in entity.items() if isinstance(value, RefStream)}
    fixed = json.dumps({key: value for key, value in entity.items() if key not in streams}, ensure_ascii=False)
    if not streams:
        yield fixed.encode()
        return
    yield fixed[:-1].encode()  # (its closing brace comes after the streamed lists; @id is always there)
    for key, stream in streams.items():
        batch = [f", {json.dumps(key)}: ["]
        for number, entity_id in enumerate(stream.ids()):
            batch.append(("" if number == 0 else ", ") + json.dumps({"@id": entity_id}, ensure_ascii=False))
            if len(batch) >= _REFS_PER_CHUNK:
                yield "".join(batch).encode()
                batch.clear()
        batch.append("]")
        yield "".join(batch).encode()
    yield b"}"


def zip_chunks(builder: CrateBuilder, entities: Iterable[Entity]) -> Iterator[bytes]:
    """The zip's bytes, as they are made: the metadata, then the payload the metadata chose."""
    sink = _Sink()
    moment = builder.published_at
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        with archive.open(_entry(METADATA_FILE, moment), "w") as entry:
            for chunk in metadata_chunks(entities):
                entry.write(chunk)
                if (ready := sink.take()) != b"":
                    yield ready
        yield sink.take()
        storage = get_storage()
        for item in builder.payload:
            info = _entry(item.path, moment, item.size)
            with archive.open(info, "w", force_zip64=item.size > _ZIP64_LIMIT) as entry:
                if item.content is not None:
                    entry.write(item.content)
                elif item.sha256 is not None:
                    for chunk in storage.iter_chunks(item.sha256):
                        entry.write(chunk)
                        if (ready := sink.take()) != b"":
                            yield ready
            yield sink.take()
    yield sink.take()
