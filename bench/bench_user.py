"""The benchmarks' own API user: its limit admits the bench's burst (with a user's default limit
the quota would answer 429, and the bench would measure the quota, not the platform)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_token(in_flight: int) -> str:
    """A token of the user `bench`, allowed `in_flight` calculations at once (and some slack)."""
    argv = [sys.executable, "manage.py", "create_token", "bench", "--max-active-calculations", str(in_flight + 50)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
