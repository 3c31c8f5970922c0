"""The anchor for the map bench: what a user would write by hand instead of the platform.

A plain Prefect flow, a `@task` that runs `obabel` on one molecule file, and `task.map` over the
files with Prefect's `ThreadPoolTaskRunner`, against the platform's own Prefect server (its
PREFECT_API_URL and credentials from the environment, as `task start` sets them). It prints one line
of JSON: the count, the seconds from the flow's call to its return, and the flow's CPU seconds.

`--sandboxed` is the same flow with the isolation every platform step keeps: each task runs obabel
through the platform's own local backend (`workflows/backends/local.py`: the bubblewrap sandbox as an
unprivileged user, the job's cgroups, prlimit), and nothing else of the platform (no calculation,
event, quota or stored output). What no step of the platform can beat while it keeps isolation. Its
thread pool is bounded (two threads a CPU): Prefect's default starts every task at once, and hundreds
of sandboxes built at once contend in the kernel (1.3x slower at 500 tasks on 2 cores).

    python bench/plain_prefect_map.py --count 1000 [--sandboxed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner


@task
def convert(path: str) -> str:
    output = f"{path}.inchikey"
    subprocess.run(["obabel", "-ismi", path, "-oinchikey", "-O", output], check=True, capture_output=True)
    return output


_backends = threading.local()
ROOT = Path(__file__).resolve().parent.parent  # the checkout: the platform's backend, for --sandboxed


@task
def convert_sandboxed(path: str) -> str:
    """`convert`, run as the platform's local backend runs a step's job: the input read-only in
    `<job>/inputs`, the output written in `<job>/work`."""
    from workflows.backends import JobSpec, JobStatus
    from workflows.backends.local import LocalBackend

    job = Path(path).parent.parent
    spec = JobSpec(
        argv=["obabel", "-ismi", f"../inputs/{Path(path).name}", "-oinchikey", "-O", "out.inchikey"],
        workdir=job / "work",
        stdout_path=job / "stdout",
        stderr_path=job / "stderr",
        inputs_dir=job / "inputs",
    )
    if getattr(_backends, "local", None) is None:
        _backends.local = LocalBackend()

    async def run() -> Any:
        backend = _backends.local
        return await backend.wait(await backend.submit(spec), spec.time_limit_seconds)

    state = asyncio.run(run())
    if state.status is not JobStatus.SUCCEEDED:
        raise RuntimeError(f"obabel {state.status.value}: {state.message}: {spec.stderr_path.read_text()[:500]}")
    return str(spec.workdir / "out.inchikey")


@flow(name="plain-prefect-map", task_runner=ThreadPoolTaskRunner())  # type: ignore[arg-type]  # (Prefect's own stubs)
def convert_all(paths: list[str]) -> list[str]:
    return list(convert.map(paths).result())


@flow(name="plain-prefect-map-sandboxed", task_runner=ThreadPoolTaskRunner(max_workers=2 * (os.cpu_count() or 1)))  # type: ignore[arg-type]
def convert_all_sandboxed(paths: list[str]) -> list[str]:
    return list(convert_sandboxed.map(paths).result())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sandboxed", action="store_true", help="each obabel in the platform's sandbox and cgroups")
    args = parser.parse_args()
    if args.sandboxed:
        sys.path.insert(0, str(ROOT))
    scratch = _sandbox_scratch() if args.sandboxed else None
    with tempfile.TemporaryDirectory(prefix="plain-map-", dir=scratch) as tmp:
        paths = []
        for i in range(args.count):  # the same molecules as the platform's map
            path = Path(tmp) / f"m{i}.smi"
            if args.sandboxed:  # a job's directory each, as the platform stages a step
                path = Path(tmp) / f"job{i}" / "inputs" / path.name
                (path.parent.parent / "work").mkdir(parents=True)
                path.parent.mkdir()
            path.write_text(f"{'C' * (i % 50 + 1)}O m{i}\n")
            paths.append(str(path))
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        outputs = convert_all_sandboxed(paths) if args.sandboxed else convert_all(paths)
        elapsed = time.perf_counter() - started
        done = sum(os.path.getsize(output) > 0 for output in outputs)
    # (sandboxed, the tools' processes are reaped inside their sandbox, not by this one: no figure)
    cpu = None if args.sandboxed else _cpu_seconds() - cpu_before
    print(json.dumps({"count": args.count, "done": done, "seconds": elapsed, "cpu_seconds": cpu}))


def _sandbox_scratch() -> Path:
    """Where the sandboxed jobs' directories go: beside the platform's own attempts'."""
    from emgapiv2.config import get_settings

    root = get_settings().calculations_dir
    root.mkdir(parents=True, exist_ok=True)
    return root


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
