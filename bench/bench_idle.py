"""CPU an idle platform spends: each service's processes (the worker, the API, the Prefect server and
its database) over a quiet interval, as a share of one core, against issue 22's targets. Run it with
the platform up (`./taskw start`) and no work in flight. See README.md."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
# service (pid file in $EMGAPI_DATA_DIR/run) -> target, % of a core; worker and API share theirs
TARGETS = {"worker": 1.0, "web": 1.0, "prefect": 5.0}


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(root: int) -> list[int]:
    children, pids = _children(), [root]
    for pid in pids:  # (grows as it goes: breadth first)
        pids.extend(children.get(pid, []))
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("EMGAPI_DATA_DIR", "var")) / "run")
    args = parser.parse_args()
    roots = {name: int((args.run_dir / f"{name}.pid").read_text()) for name in TARGETS}
    # the Prefect server's own PostgreSQL (scripts/services.sh) is part of what Prefect costs
    postmaster = Path(os.environ.get("EMGAPI_DATA_DIR", "var")) / "prefect-db" / "postmaster.pid"
    trees = {name: _tree(pid) for name, pid in roots.items()}
    if postmaster.exists():
        trees["prefect"] += _tree(int(postmaster.read_text().split()[0]))
    before = {name: _cpu_seconds(pids) for name, pids in trees.items()}
    time.sleep(args.seconds)
    trees = {name: _tree(pid) for name, pid in roots.items()} | {"prefect": trees["prefect"]}
    used = {name: 100 * (_cpu_seconds(pids) - before[name]) / args.seconds for name, pids in trees.items()}
    for name in ("worker", "web", "prefect"):
        print(f"idle {name}: {used[name]:.2f} % of a core over {args.seconds:.0f} s")
    ours = used["worker"] + used["web"]
    print(f"idle worker + API: {ours:.2f} % of a core [target <= 1 %]")
    print(f"idle Prefect server (and its database): {used['prefect']:.2f} % of a core [target <= 5 %]")


if __name__ == "__main__":
    main()
