"""What a scrape of /metrics costs with 100,000 calculations in the database (target: ≤ 50 ms).
In-process on the platform's database, as bench_notifications.py; a running API is timed too if it
answers at EMGAPI_PUBLIC_URL. See README.md.

    python bench/bench_metrics.py [--rows 100000] [--scrapes 20]

1. 100,000 calculations are bulk-created (no Prefect, no events): finished in every final state, with
   a few hundred held QUEUED (a retry's backoff a day away, so no worker takes them), over 6 tools and
   3 backends, with a provenance record of a realistic size.
2. The scrape: the API's whole exposition (its counters and histograms, and the gauges it reads from
   the database in a few aggregate queries), in this process, median and max of N after one warm-up;
   then GET /metrics through the running API with the metrics token, if it answers.

Everything it makes belongs to the user `bench-metrics`, and is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from calculations.metrics import exposition, metrics_token  # noqa: E402
from calculations.models import Calculation  # noqa: E402
from calculations.states import RunState  # noqa: E402
from emgapiv2.config import get_settings  # noqa: E402

USER = "bench-metrics"
TARGET_MS = 50.0
TOOLS = ["prodigal", "hmmsearch", "obabel", "cmsearch", "diamond", "bench"]
BACKENDS = ["local", "container", "slurm"]
FINAL = [RunState.COMPLETE] * 8 + [RunState.EXECUTOR_ERROR, RunState.SYSTEM_ERROR, RunState.CANCELED]
BATCH = 5000


def _provenance(index: int) -> dict[str, object]:
    """About the size of a real calculation's (an attempt's record, the argv, the inputs' digests)."""
    return {
        "tool": TOOLS[index % len(TOOLS)],
        "tool_version": "1.0",
        "params": {"mode": "single", "evalue": 1e-5},
        "inputs": {"contigs": {"sha256": f"{index:064x}", "size": 30_000}},
        "argv": ["prodigal", "-q", "-i", "../inputs/contigs/genome.fna", "-a", "proteins.faa", "-f", "gff"],
        "attempts": [{"attempt": 1, "backend": BACKENDS[index % 3], "host": "node-1", "exit_code": 0,
                      "resource_usage": {"wall_seconds": 1.5, "user_cpu_seconds": 1.2, "max_rss_mb": 42.0}}],
    }  # fmt: skip


def create(owner: Any, rows: int) -> None:
    now = timezone.now()
    held_until = now + timedelta(days=1)
    for start in range(0, rows, BATCH):
        batch = []
        for index in range(start, min(rows, start + BATCH)):
            held = index % 300 == 0  # ~330 QUEUED rows a worker will not take for a day
            batch.append(Calculation(
                owner=owner, tool=TOOLS[index % len(TOOLS)], tool_version="1.0", cache_key=f"{index:064x}",
                backend=BACKENDS[index % 3], state=RunState.QUEUED if held else FINAL[index % len(FINAL)],
                attempt=2 if held else 1, not_before=held_until if held else None, provenance=_provenance(index),
                started_at=None if held else now, finished_at=None if held else now,
            ))  # fmt: skip
        Calculation.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # as autovacuum does soon after so many inserts: the statistics, and the visibility map an
            # index-only scan needs
            cursor.execute(f"VACUUM ANALYZE {Calculation._meta.db_table}")


def timed(scrape: object, count: int) -> list[float]:
    assert callable(scrape)
    scrape()  # warm: connections, caches
    times = []
    for _ in range(count):
        started = time.perf_counter()
        scrape()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(what: str, times: list[float]) -> None:
    median = statistics.median(times)
    verdict = "met" if median <= TARGET_MS else "MISSED"
    print(f"{what}: median {median:.1f} ms, max {max(times):.1f} ms [target <= {TARGET_MS:.0f} ms: {verdict}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    owner, _ = get_user_model().objects.get_or_create(username=USER)
    Calculation.objects.filter(owner=owner).delete()
    try:
        started = time.perf_counter()
        create(owner, args.rows)
        total = Calculation.objects.count()
        print(f"{args.rows:,} calculations created in {time.perf_counter() - started:.1f} s "
              f"({total:,} in the database, {connection.vendor})")  # fmt: skip
        report("scrape in-process", timed(lambda: exposition(with_database=True), args.scrapes))
        url = f"{get_settings().public_url.rstrip('/')}/metrics"
        headers = {"Authorization": f"Bearer {metrics_token()}"}
        try:
            with httpx.Client(headers=headers, timeout=30) as client:
                if client.get(url).status_code != 200:
                    raise httpx.HTTPError("not 200")
                report(f"GET {url}", timed(lambda: client.get(url).raise_for_status(), args.scrapes))
        except httpx.HTTPError as exc:
            print(f"GET {url}: skipped, no API answers there with the token ({exc})")
    finally:
        Calculation.objects.filter(owner=owner).delete()


if __name__ == "__main__":
    main()
