"""Creating files: blobs stored first, then the user's row that points at them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from django.db.models import Sum

from calculations.errors import StorageQuotaExceeded
from calculations.models import Calculation, File
from calculations.storage import get_storage
from emgapiv2.config import get_settings

_UNSAFE_NAME_CHARACTERS = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_file_name(name: str) -> str:
    """A display name safe anywhere: no directories, no control characters, not empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME_CHARACTERS.sub("_", base).strip().lstrip(".")
    return base[:255] or "upload"


@dataclass(frozen=True)
class OutputBlob:
    """An output the worker stored: its role, file name, and blob."""

    role: str
    name: str
    sha256: str
    size: int


def add_output_files(calc: Calculation, outputs: Iterable[OutputBlob]) -> None:
    """Output rows of `calc`, owned by its owner, pointing at stored blobs (call within its action)."""
    File.objects.bulk_create(
        File(
            owner_id=calc.owner_id,
            name=output.name,
            size=output.size,
            sha256=output.sha256,
            produced_by=calc,
            output_role=output.role,
        )
        for output in outputs
    )


def check_storage_quota(owner_id: int, adding_bytes: int) -> None:
    quota = get_settings().quota.storage_bytes
    used = File.objects.filter(owner_id=owner_id).aggregate(total=Sum("size"))["total"] or 0
    if used + adding_bytes > quota:
        raise StorageQuotaExceeded(
            f"storage quota exceeded: you hold {used} bytes, this file is {adding_bytes}, the quota is {quota}; "
            "delete files or ask for more"
        )


def do_create_file(owner_id: int, name: str, stream: BinaryIO, *, size_hint: int | None = None) -> File:
    if size_hint is not None:
        check_storage_quota(owner_id, size_hint)
    # store the bytes first (outside the transaction: it may take long); an orphan blob is
    # harmless, a File row without its blob is not
    info = get_storage().put(stream)
    return File.objects.create(owner_id=owner_id, name=clean_file_name(name), size=info.size, sha256=info.sha256)
