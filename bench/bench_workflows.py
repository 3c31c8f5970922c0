"""Workflows: a map of 1,000 tiny Open Babel steps in one workflow run, a prodigal -> hmmsearch pipeline
against both tools run bare, and the worker's memory with 1,000 steps waiting on held Slurm jobs.
Needs a running platform (task up / task start). See README.md.

    python bench/bench_workflows.py map [--counts 500,1000] [--singles 50]
    python bench/bench_workflows.py pipeline [--runs 3]
    python bench/bench_workflows.py held [--count 1000]   (the worker must hold its Slurm jobs: see README)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from bench_user import bench_token

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "data"
RUN_DIR = Path(os.environ.get("RUN_DIR", ROOT / "var" / "run"))
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
TICKS = os.sysconf("SC_CLK_TCK")


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def upload(self, name: str, content: bytes) -> str:
        response = self.http.post("/files", files={"file": (name, content)})
        response.raise_for_status()
        return str(response.json()["id"])

    def run(self, steps: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/workflows/pipeline/runs", json={"params": {"steps": steps}})
        if response.status_code >= 400:
            raise SystemExit(f"pipeline: {response.status_code} {response.text[:500]}")
        return dict(response.json())

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/workflow-runs/{run_id}").json())

    def wait_run(self, run_id: str, timeout_seconds: float = 1800, poll_seconds: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:  # (its progress: the whole run lists every step)
            if self.http.get(f"/workflow-runs/{run_id}/progress").json()["state"] in TERMINAL:
                return dict(self.http.get(f"/workflow-runs/{run_id}").json())
            time.sleep(poll_seconds)
        raise SystemExit(f"workflow run {run_id} not terminal after {timeout_seconds} s")


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _session_cpu_seconds(name: str) -> float:
    """User + system CPU of every process in the session of `task start`'s `name` (its pid file)."""
    leader = int((RUN_DIR / f"{name}.pid").read_text())
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _platform_cpu() -> float:
    return _session_cpu_seconds("prefect") + _session_cpu_seconds("worker")


def _molecules(api: Api, count: int, tag: str) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: api.upload(f"{tag}-{i}.smi", f"{'C' * (i % 50 + 1)}O m{i}\n".encode()),
                             range(count)))  # fmt: skip


def _server_settled(before: float, timeout_seconds: float = 120.0) -> float:
    """The Prefect server's CPU since `before`, once it has settled (under a tenth of a core for half
    a second): a run's last events are still being recorded after it ends, and they are its cost, not
    the next run's."""
    deadline, last = time.monotonic() + timeout_seconds, _session_cpu_seconds("prefect")
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _session_cpu_seconds("prefect")
        if now - last < 0.05:
            return now - before
        last = now
    return last - before


def _plain_prefect_map(count: int, *, sandboxed: bool = False) -> tuple[float, float | None]:
    """The anchor: plain Prefect's task.map of obabel (plain_prefect_map.py) against the same Prefect
    server; its seconds, and the CPU per step of its process and the Prefect server (None when
    `sandboxed`: each obabel in the platform's sandbox, the floor of an isolated step)."""
    server_before = _session_cpu_seconds("prefect")
    anchor = [sys.executable, str(Path(__file__).with_name("plain_prefect_map.py")), "--count", str(count)]
    done = subprocess.run(anchor + (["--sandboxed"] if sandboxed else []), check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["done"] != count:
        raise SystemExit(f"plain Prefect map{' (sandboxed)' if sandboxed else ''}: {figures['done']}/{count} outputs")
    server = _server_settled(server_before)
    if figures["cpu_seconds"] is None:
        return float(figures["seconds"]), None
    return float(figures["seconds"]), (figures["cpu_seconds"] + server) / count


def _platform_map(api: Api, count: int) -> tuple[float, float, float, list[str]]:
    """The platform's map (a pipeline mapping obabel, use_cache false): its seconds, the CPU per step
    of the worker and of the Prefect server (without the tool's processes), and the uploaded files."""
    files = _molecules(api, count, f"map{int(time.time())}")
    steps = {"convert": {"tool": "obabel", "params": {"output_format": "inchikey"}, "use_cache": False,
                         "inputs": {"molecules": {"each": [f"file:{f}" for f in files]}}}}  # fmt: skip
    worker, server = _session_cpu_seconds("worker"), _session_cpu_seconds("prefect")
    # the run's own times, created -> finished, so that the bench can poll seldom, and its progress
    # only: the whole run lists every step (a 1,000-step run's: 0.6 MB, 0.16 s of the API's CPU), and
    # polled every second it took a twelfth of the two cores from the run it measures
    run = api.wait_run(api.run(steps)["id"], poll_seconds=5.0)
    elapsed = (_parse(run["finished_at"]) - _parse(run["created_at"])).total_seconds()
    worker, server = _session_cpu_seconds("worker") - worker, _server_settled(server)
    complete = sum(step["state"] == "COMPLETE" for step in run["steps"])
    if (run["state"], complete) != ("COMPLETE", count):
        raise SystemExit(f"map of {count}: {run['state']}, {complete}/{count} steps COMPLETE: {run['error']}")
    return elapsed, worker / count, server / count, files


def bench_map(api: Api, counts: list[int], singles: int) -> None:
    """Each count: plain Prefect's task.map first, then the same with the platform's isolation (its
    floor), then the platform's map, on the same machine and Prefect server in the same run, and their
    ratios (issue 23: >= 1.0 to plain Prefect)."""
    files: list[str] = []
    for count in counts:
        plain_seconds, plain_cpu = _plain_prefect_map(count)
        floor_seconds, _ = _plain_prefect_map(count, sandboxed=True)
        seconds, worker, server, files = _platform_map(api, count)
        print(f"map of {count} obabel steps: the platform {seconds:.1f} s ({count / seconds:.1f} steps/s, CPU a step: "
              f"worker {worker * 1000:.0f} ms, Prefect server {server * 1000:.0f} ms); "
              f"plain Prefect task.map {plain_seconds:.1f} s "
              f"({count / plain_seconds:.1f} steps/s, flow process with obabel + Prefect server CPU "
              f"{(plain_cpu or 0) * 1000:.0f} ms a step): ratio {plain_seconds / seconds:.2f}  [target >= 1.0]; "
              f"the same with each obabel in the platform's sandbox and cgroups (the floor of an isolated step) "
              f"{floor_seconds:.1f} s: ratio {floor_seconds / seconds:.2f} to it, and the floor's own "
              f"{plain_seconds / floor_seconds:.2f}",
              flush=True)  # fmt: skip

    # the same work as single calculations, on `singles` of them: one flow run each
    ids, cpu_before, started = [], _platform_cpu(), time.monotonic()
    for file_id in files[:singles]:
        body = {"inputs": {"molecules": file_id}, "params": {"output_format": "inchikey"}, "use_cache": False}
        ids.append(api.http.post("/tools/obabel/calculations", json=body).json()["id"])
    while True:
        states = [api.http.get(f"/calculations/{i}").json()["state"] for i in ids]
        if all(state in TERMINAL for state in states):
            break
        time.sleep(0.5)
    single_elapsed, single_cpu = time.monotonic() - started, _platform_cpu() - cpu_before
    print(f"as single calculations ({singles} measured): {singles / single_elapsed:.1f} calculations/s, platform CPU "
          f"{single_cpu / singles * 1000:.0f} ms per calculation", flush=True)  # fmt: skip


def _bare(tmp: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["prodigal", "-q", "-i", str(DEMO / "genome.fna"), "-a", "p.faa", "-f", "gff", "-o", "g.gff",
                    "-p", "meta"], cwd=tmp, check=True)  # fmt: skip
    subprocess.run(["hmmsearch", "--tblout", "hits.tbl", "-o", "report.txt", "-E", "1e-05", "--cpu", "1",
                    str(DEMO / "family.hmm"), "p.faa"], cwd=tmp, check=True)  # fmt: skip
    return time.perf_counter() - started


def bench_pipeline(api: Api, runs: int) -> None:
    genome = api.upload("genome.fna", (DEMO / "genome.fna").read_bytes())
    profile = api.upload("family.hmm", (DEMO / "family.hmm").read_bytes())
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "meta"}, "inputs": {"contigs": f"file:{genome}"},
                  "use_cache": False},
        "hits": {"tool": "hmmsearch", "params": {"evalue": 1e-5}, "use_cache": False,
                 "inputs": {"profile": f"file:{profile}", "sequences": "genes.proteins"}},
    }  # fmt: skip
    platform, bare = [], []
    for _ in range(runs):
        run = api.wait_run(api.run(steps)["id"])
        if run["state"] != "COMPLETE":
            raise SystemExit(f"pipeline {run['state']}: {run['error']}")
        platform.append((_parse(run["finished_at"]) - _parse(run["created_at"])).total_seconds())
        with tempfile.TemporaryDirectory() as tmp:
            bare.append(_bare(Path(tmp)))
    p, b = statistics.median(platform), statistics.median(bare)
    print(f"pipeline prodigal -> hmmsearch on the demo genome: {p:.2f} s (created -> finished, median of {runs}) vs "
          f"both tools bare {b:.2f} s: overhead {p - b:.2f} s in all  [target <= 1 s]", flush=True)  # fmt: skip


def _rss_mb(pid: int) -> float:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024


def bench_held(api: Api, count: int) -> None:
    worker = int((RUN_DIR / "worker.pid").read_text())
    files = _molecules(api, count, f"held{int(time.time())}")
    baseline = _rss_mb(worker)
    steps = {"convert": {"tool": "obabel", "backend": "slurm", "use_cache": False,
                         "inputs": {"molecules": {"each": [f"file:{f}" for f in files]}}}}  # fmt: skip
    started = time.monotonic()
    run = api.run(steps)
    peak = baseline
    while True:
        steps_now = api.get_run(run["id"])["steps"]
        running = sum(step["state"] == "RUNNING" for step in steps_now)
        peak = max(peak, _rss_mb(worker))
        if running >= count:
            break
        print(f"  {time.monotonic() - started:5.0f} s: {running} steps RUNNING on Slurm, worker RSS "
              f"{_rss_mb(worker):.0f} MB", flush=True)  # fmt: skip
        time.sleep(10)
    samples = []
    for _ in range(10):
        samples.append(_rss_mb(worker))
        time.sleep(2)
    rss = statistics.median(samples)
    print(f"HELD: {count} steps of one workflow run waiting on held Slurm jobs, all RUNNING in "
          f"{time.monotonic() - started:.0f} s: worker RSS {rss:.0f} MB (baseline {baseline:.0f} MB, peak "
          f"{max(peak, *samples):.0f} MB)  [target <= 300 MB]", flush=True)  # fmt: skip
    cancel = api.http.post(f"/workflow-runs/{run['id']}/cancel")
    final = api.wait_run(run["id"], timeout_seconds=600)
    print(f"canceled ({cancel.status_code}): run {final['state']}, steps "
          f"{statistics.multimode(step['state'] for step in final['steps'])}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["map", "pipeline", "held"])
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--count", type=int, default=1000, help="held: steps")
    parser.add_argument("--counts", default="500,1000", help="map: the sizes, each against plain Prefect")
    parser.add_argument("--singles", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    api = Api(args.url, bench_token(args.singles + 10))
    if args.mode == "map":
        bench_map(api, [int(count) for count in args.counts.split(",")], args.singles)
    elif args.mode == "pipeline":
        bench_pipeline(api, args.runs)
    else:
        bench_held(api, args.count)


if __name__ == "__main__":
    main()
