"""Secrets the platform makes for itself on first start: random, kept in `<data_dir>/secrets/<name>`,
readable by their owner only (the directory 0700, each file 0600). `scripts/secrets.sh` makes the
same files for the shell side (the Prefect server's credentials)."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

ALPHABET = string.ascii_letters + string.digits


def read_or_create_secret(data_dir: Path, name: str) -> str:
    """The secret `name`, created (32 letters and digits) if it does not exist yet."""
    directory = data_dir / "secrets"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    if not path.exists() or not path.read_text().strip():
        value = "".join(secrets.choice(ALPHABET) for _ in range(32))
        temporary = directory / f".{name}.{os.getpid()}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value)
        os.replace(temporary, path)  # atomic: a concurrent first start reads a whole secret or makes its own
    os.chmod(path, 0o600)
    return path.read_text().strip()
