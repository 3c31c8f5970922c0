"""Reading a calculation's tool logs: from storage once the attempt ended, else from its work dir."""

from pathlib import Path

from calculations.models import Calculation
from calculations.provenance import Provenance
from calculations.schemas import LogsOut
from calculations.storage import BlobNotFound, get_storage
from calculations.workdirs import log_paths
from emgapiv2.config import get_settings


def _tail_of_blob(sha256: str | None, size_limit: int) -> tuple[str, bool]:
    if sha256 is None:
        return "", False
    data = b""
    try:
        for chunk in get_storage().iter_chunks(sha256):
            data = (data + chunk)[-size_limit - 1 :]
    except BlobNotFound:
        return "", False
    return data[-size_limit:].decode("utf-8", errors="replace"), len(data) > size_limit


def tail_of_file(path: Path, size_limit: int) -> tuple[str, bool]:
    """The last `size_limit` bytes of a file as text, and whether anything was cut."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - size_limit, 0))
            return handle.read().decode("utf-8", errors="replace"), size > size_limit
    except OSError:
        return "", False


def read_logs(calc: Calculation) -> LogsOut:
    limit = get_settings().log_tail_bytes
    provenance = Provenance.model_validate(calc.provenance)
    record = next((r for r in provenance.attempts if r.attempt == calc.attempt), None)
    if record is not None and (record.stdout_sha256 or record.stderr_sha256):
        stdout, stdout_cut = _tail_of_blob(record.stdout_sha256, limit)
        stderr, stderr_cut = _tail_of_blob(record.stderr_sha256, limit)
    else:
        stdout_path, stderr_path = log_paths(calc.id, calc.attempt)
        stdout, stdout_cut = tail_of_file(stdout_path, limit)
        stderr, stderr_cut = tail_of_file(stderr_path, limit)
    return LogsOut(attempt=calc.attempt, stdout=stdout, stderr=stderr, truncated=stdout_cut or stderr_cut)
