"""RO-Crate export of a 1,000-step map (metadata only): how long it takes and how much memory it
needs at its peak, against the same for 100 steps (memory must stay flat: the crate is written as
it is read). In-process, on the platform's database (no server needed). See README.md.

    python bench/bench_crates.py [--steps 1000] [--small 100] [--repeat 3]

The runs are made once, through the actions, as a worker would leave them (calculations/tests/
crate_runs.py: no tool runs), by the user `bench-crates`; an existing COMPLETE pipeline run with
that many steps (the map of bench_workflows.py) is reused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db.models import Count  # noqa: E402

from calculations.actions import do_set_user_quota  # noqa: E402
from calculations.crates import crate_chunks  # noqa: E402
from calculations.models import WorkflowRun  # noqa: E402
from calculations.states import RunState  # noqa: E402
from calculations.tests.crate_runs import finished_map  # noqa: E402

TARGET_SECONDS = 5.0


def map_run(steps: int) -> UUID:
    """A COMPLETE pipeline run of `steps` steps: the newest there is, else one made now."""
    existing = (
        WorkflowRun.objects.filter(workflow="pipeline", state=RunState.COMPLETE)
        .annotate(steps_count=Count("steps"))
        .filter(steps_count=steps)
        .order_by("-created_at")
        .values_list("id", flat=True)
        .first()
    )
    if existing is not None:
        return existing
    user, _ = get_user_model().objects.get_or_create(username="bench-crates")
    do_set_user_quota(user.username, max_active_calculations=steps + 50)
    started = time.perf_counter()
    run = finished_map(user.pk, steps)
    print(f"  made a {steps}-step map run {run.id} in {time.perf_counter() - started:.1f} s (once; reused after)")
    return run.id


def export_seconds(run_id: UUID) -> tuple[float, int]:
    """One metadata-only export, its zip consumed as a response would send it: (seconds, bytes)."""
    started = time.perf_counter()
    size = sum(len(chunk) for chunk in crate_chunks("workflow-run", run_id, "none"))
    return time.perf_counter() - started, size


def export_peak_bytes(run_id: UUID) -> int:
    tracemalloc.start()
    try:
        for _ in crate_chunks("workflow-run", run_id, "none"):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100, help="the smaller map memory is compared with")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"RO-Crate export, metadata only (?data=none), of a {args.steps}-step map and a {args.small}-step one")
    figures: dict[int, tuple[float, int, int]] = {}  # steps -> (median seconds, zip bytes, peak bytes)
    for steps in (args.small, args.steps):
        run_id = map_run(steps)
        export_seconds(run_id)  # warm: imports, the tool registry, the database's caches
        runs = [export_seconds(run_id) for _ in range(args.repeat)]
        figures[steps] = (statistics.median(seconds for seconds, _ in runs), runs[0][1], export_peak_bytes(run_id))
    for steps, (seconds, size, peak) in figures.items():
        print(f"  {steps:>5} steps: {seconds:.2f} s (median of {args.repeat}), zip {size / 1024:.0f} KiB, "
              f"peak Python memory {peak / 1024**2:.1f} MiB")  # fmt: skip
    seconds, _, peak = figures[args.steps]
    small_peak = figures[args.small][2]
    verdict = "met" if seconds <= TARGET_SECONDS else "MISSED"
    print(f"export of {args.steps} steps: {seconds:.2f} s (target ≤ {TARGET_SECONDS:.0f} s: {verdict})")
    print(
        f"peak memory {args.small} → {args.steps} steps: {small_peak / 1024**2:.1f} → {peak / 1024**2:.1f} MiB "
        f"(×{peak / max(small_peak, 1):.1f} for ×{args.steps / args.small:.0f} steps; target: flat)"
    )


if __name__ == "__main__":
    main()
