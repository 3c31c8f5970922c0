"""The container and Slurm backends: overhead against the bare engine, and the worker's memory with
many Slurm calculations in flight. See README.md.

    python bench/bench_backends.py overhead [--runs 5]
    python bench/bench_backends.py inflight [--count 1000]   (the worker must hold its Slurm jobs: see README)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from bench_user import bench_token

ROOT = Path(__file__).resolve().parent.parent
GENOME = ROOT / "demo" / "data" / "genome.fna"
IMAGE = "emgapi/prodigal:2.6.3"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
DOCKER_CLI = "/usr/bin/docker"  # Debian's CLI: the /usr/local one has no classic builder


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def upload(self, path: Path) -> str:
        with path.open("rb") as handle:
            response = self.http.post("/files", files={"file": (path.name, handle)})
        response.raise_for_status()
        return str(response.json()["id"])

    def submit(self, tool: str, inputs: dict[str, str], params: dict[str, Any], backend: str) -> dict[str, Any]:
        body = {"inputs": inputs, "params": params, "backend": backend, "use_cache": False}
        response = self.http.post(f"/tools/{tool}/calculations", json=body)
        if response.status_code >= 400:
            raise SystemExit(f"submit: {response.status_code} {response.text}")
        return dict(response.json())

    def wait(self, calculation_id: str, timeout_seconds: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            calc = dict(self.http.get(f"/calculations/{calculation_id}").json())
            if calc["state"] in TERMINAL:
                return calc
            time.sleep(0.05)
        raise SystemExit(f"calculation {calculation_id} not terminal after {timeout_seconds} s")


def _prodigal_argv(genome: str) -> list[str]:
    return ["prodigal", "-q", "-i", genome, "-a", "proteins.faa", "-f", "gff", "-o", "genes.gff", "-p", "meta"]


def _bare_docker_run(workdir: Path) -> float:
    """`docker run` of the same image and command, with the same mounts, waiting for its exit."""
    (workdir / "in").mkdir(parents=True, exist_ok=True)
    (workdir / "work").mkdir(exist_ok=True)
    genome = workdir / "in" / GENOME.name
    genome.write_bytes(GENOME.read_bytes())
    argv = [DOCKER_CLI, "run", "--rm", "--network", "none", "-v", f"{workdir}/in:{workdir}/in:ro"]
    argv += ["-v", f"{workdir}/work:{workdir}/work", "-w", f"{workdir}/work", IMAGE, *_prodigal_argv(str(genome))]
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - started


def _bare_sbatch(workdir: Path, poll_seconds: float) -> float:
    """sbatch of the same command, then squeue polling until it has ended (what a script would do)."""
    workdir.mkdir(parents=True, exist_ok=True)
    genome = workdir / GENOME.name
    genome.write_bytes(GENOME.read_bytes())
    started = time.monotonic()
    job_id = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={workdir}", f"--output={workdir}/out", "--mem=1024M", "--wrap",
         " ".join(_prodigal_argv(str(genome)))],
        check=True, capture_output=True, text=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    while True:
        state = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if state and state not in {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING"}:
            return time.monotonic() - started
        time.sleep(poll_seconds)


def overhead(api: Api, runs: int, poll_seconds: float) -> None:
    genome_id = api.upload(GENOME)
    for backend in ("container", "slurm"):
        platform, bare = [], []
        for run in range(runs + 1):  # the first of each is a warm-up
            started = time.monotonic()
            calc = api.wait(api.submit("prodigal", {"contigs": genome_id}, {"mode": "meta"}, backend)["id"])
            if calc["state"] != "COMPLETE":
                raise SystemExit(f"{backend}: {calc['state']}: {calc['error']}")
            elapsed = time.monotonic() - started
            with tempfile.TemporaryDirectory(dir=os.environ.get("EMGAPI_DATA_DIR")) as tmp:
                bare_seconds = (
                    _bare_docker_run(Path(tmp)) if backend == "container" else _bare_sbatch(Path(tmp), poll_seconds)
                )
            if run:
                platform.append(elapsed)
                bare.append(bare_seconds)
        p, b = statistics.median(platform), statistics.median(bare)
        what = "docker run" if backend == "container" else f"sbatch + squeue every {poll_seconds} s"
        print(
            f"{backend:>9}: platform end to end median {p:.2f} s, bare {what} median {b:.2f} s: "
            f"ratio {p / b:.2f}x, difference {p - b:+.2f} s ({runs} runs each)",
            flush=True,
        )


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def inflight(api: Api, count: int, worker_pid: int) -> None:
    """`count` Open Babel calculations whose Slurm jobs are held (EMGAPI_SLURM__EXTRA_ARGS=["--hold"]):
    all in flight at once, the worker waiting on every one; then released and run to the end."""
    with tempfile.NamedTemporaryFile("w", suffix=".smi") as smiles:
        smiles.write("CCO\n")
        smiles.flush()
        molecules_id = api.upload(Path(smiles.name))
    baseline, _ = _rss_mb(worker_pid)
    print(f"worker pid {worker_pid}: RSS {baseline:.0f} MB before", flush=True)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: api.submit("obabel", {"molecules": molecules_id}, {}, "slurm")["id"],
                            range(count)))  # fmt: skip
    print(f"submitted {count} in {time.monotonic() - started:.0f} s", flush=True)
    peak = 0.0
    while True:
        page = api.http.get("/calculations", params={"state": "RUNNING", "limit": 1}).json()
        rss, _ = _rss_mb(worker_pid)
        peak = max(peak, rss)
        if page["count"] >= count:
            break
        print(f"  {time.monotonic() - started:5.0f} s: {page['count']} running on Slurm, worker RSS {rss:.0f} MB",
              flush=True)  # fmt: skip
        time.sleep(10)
    held = subprocess.run(["squeue", "-h", "--me", "-t", "PENDING", "-o", "%i"], capture_output=True, text=True)
    settle_until = time.monotonic() + 20
    samples = []
    while time.monotonic() < settle_until:
        samples.append(_rss_mb(worker_pid)[0])
        time.sleep(2)
    in_flight_rss = statistics.median(samples)
    print(
        f"IN FLIGHT: {count} calculations RUNNING on Slurm ({len(held.stdout.split())} jobs held in squeue), "
        f"all in {time.monotonic() - started:.0f} s; worker RSS {in_flight_rss:.0f} MB "
        f"(baseline {baseline:.0f} MB, {(in_flight_rss - baseline) * 1024 / count:.0f} kB per calculation), "
        f"peak {max(peak, *samples):.0f} MB",
        flush=True,
    )
    squeue_started = time.monotonic()
    subprocess.run(["squeue", "-h", "-t", "all", "--me", "-o", "%i|%T"], capture_output=True, check=True)
    print(f"one squeue call for all of them: {time.monotonic() - squeue_started:.3f} s", flush=True)
    released = time.monotonic()
    job_ids = held.stdout.split()
    for chunk in range(0, len(job_ids), 200):
        subprocess.run(["scontrol", "release", ",".join(job_ids[chunk : chunk + 200])], check=False)
    states: dict[str, str] = {}
    while time.monotonic() - released < 3600:
        items = api.http.get("/calculations", params={"limit": count + 100}).json()["items"]
        states = {c["id"]: c["state"] for c in items if c["id"] in set(ids)}
        if sum(state in TERMINAL for state in states.values()) >= count:
            break
        time.sleep(5)
    finals = statistics.multimode(states.values())
    complete = sum(state == "COMPLETE" for state in states.values())
    print(
        f"released: {complete}/{count} COMPLETE (most common: {finals}) {time.monotonic() - released:.0f} s later; "
        f"worker RSS now {_rss_mb(worker_pid)[0]:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["overhead", "inflight"])
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--poll-seconds", type=float, default=float(os.environ.get("EMGAPI_SLURM__POLL_SECONDS", 2)))
    args = parser.parse_args()
    api = Api(args.url, bench_token(1200))  # the inflight figure holds 1,000 at once
    if args.mode == "overhead":
        overhead(api, args.runs, args.poll_seconds)
    else:
        run_dir = Path(os.environ.get("RUN_DIR", ROOT / "var" / "run"))
        inflight(api, args.count, int((run_dir / "worker.pid").read_text()))


if __name__ == "__main__":
    main()
