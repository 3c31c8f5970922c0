"""The anchor for the map bench: what a user would write by hand instead of the platform.

A plain Prefect flow, a `@task` that runs `obabel` on one molecule file, and `task.map` over the
files with Prefect's `ThreadPoolTaskRunner`, against the platform's own Prefect server (its
PREFECT_API_URL and credentials from the environment, as `task start` sets them). It prints one line
of JSON: the count, the seconds from the flow's call to its return, and the flow's CPU seconds.

    python bench/plain_prefect_map.py --count 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner


@task
def convert(path: str) -> str:
    output = f"{path}.inchikey"
    subprocess.run(["obabel", "-ismi", path, "-oinchikey", "-O", output], check=True, capture_output=True)
    return output


@flow(name="plain-prefect-map", task_runner=ThreadPoolTaskRunner())  # type: ignore[arg-type]  # (Prefect's own stubs)
def convert_all(paths: list[str]) -> list[str]:
    return list(convert.map(paths).result())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plain-map-") as tmp:
        paths = []
        for i in range(args.count):  # the same molecules as the platform's map
            path = Path(tmp) / f"m{i}.smi"
            path.write_text(f"{'C' * (i % 50 + 1)}O m{i}\n")
            paths.append(str(path))
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        outputs = convert_all(paths)
        elapsed = time.perf_counter() - started
        done = sum(os.path.getsize(output) > 0 for output in outputs)
    print(
        json.dumps({"count": args.count, "done": done, "seconds": elapsed, "cpu_seconds": _cpu_seconds() - cpu_before})
    )


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
