"""Dispatch latency, a burst of trivial calculations, and per-calculation overhead. See README.md."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bench_user import bench_token

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
SMILES = "CCO\n"


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


class Bench:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.molecules = self.http.post("/files", files={"file": ("bench.smi", SMILES.encode())}).json()["id"]

    def submit(self) -> dict[str, Any]:
        response = self.http.post(
            "/tools/obabel/calculations",
            json={"inputs": {"molecules": self.molecules}, "params": {"output_format": "inchikey"}, "use_cache": False},
        )
        response.raise_for_status()
        return dict(response.json())

    def get(self, calculation_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/calculations/{calculation_id}").json())

    def wait(self, calculation_id: str, timeout_seconds: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            calc = self.get(calculation_id)
            if calc["state"] in TERMINAL:
                return calc
            time.sleep(0.05)
        raise SystemExit(f"calculation {calculation_id} not terminal after {timeout_seconds} s")


def dispatch_latency(bench: Bench, runs: int) -> list[float]:
    latencies = []
    for _ in range(runs):
        posted = datetime.now(UTC)
        calc = bench.wait(bench.submit()["id"])
        if calc["state"] != "COMPLETE":
            raise SystemExit(f"latency run failed: {calc['error']}")
        latencies.append((_parse(calc["provenance"]["attempts"][0]["started_at"]) - posted).total_seconds())
    return latencies


def burst(bench: Bench, count: int) -> dict[str, Any]:
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        ids = [calc["id"] for calc in pool.map(lambda _: bench.submit(), range(count))]
    submitted = time.monotonic() - started
    pending = set(ids)
    states: dict[str, str] = {}
    while pending and time.monotonic() - started < 600:
        # one list request per round: the client's own polling must not load the server it measures
        for calc in bench.http.get("/calculations", params={"limit": count + 100}).json()["items"]:
            if calc["id"] in pending and calc["state"] in TERMINAL:
                states[calc["id"]] = calc["state"]
                pending.discard(calc["id"])
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    return {"submitted_seconds": submitted, "all_terminal_seconds": elapsed, "states": states, "ids": ids}


def crashed_flow_runs(ids: list[str], bench: Bench) -> int:
    from prefect.client.orchestration import get_client

    flow_run_ids = [bench.get(i)["flow_run_id"] for i in ids]
    with get_client(sync_client=True) as client:
        crashed = 0
        for flow_run_id in flow_run_ids:
            if flow_run_id and (state := client.read_flow_run(flow_run_id).state) and state.is_crashed():
                crashed += 1
    return crashed


def bare_seconds(runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench.smi").write_text(SMILES)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["obabel", "-ismi", "bench.smi", "-oinchikey", "-O", "out.inchikey"], cwd=tmp,
                           check=True, capture_output=True)  # fmt: skip
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def sandbox_startup_ms(runs: int = 40) -> tuple[float, float]:
    """Median wall time of a trivial tool (`true`) through the local backend, sandboxed and bare."""
    import asyncio
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from workflows.backends.base import JobSpec
    from workflows.backends.local import LocalBackend

    async def median_ms(backend: LocalBackend, base: Path) -> float:
        times = []
        for i in range(runs):
            work = base / f"{i}"
            work.mkdir()
            spec = JobSpec(argv=["true"], workdir=work, stdout_path=base / f"{i}.out", stderr_path=base / f"{i}.err")
            started = time.perf_counter()
            await backend.wait(await backend.submit(spec), 30)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as sandboxed, tempfile.TemporaryDirectory() as bare:
        return (
            asyncio.run(median_ms(LocalBackend(), Path(sandboxed))),
            asyncio.run(median_ms(LocalBackend(sandbox=None), Path(bare))),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    bench = Bench(args.url, bench_token(args.burst))

    latencies = dispatch_latency(bench, args.latency_runs)
    quantiles = statistics.quantiles(latencies, n=20)
    print(f"dispatch latency (POST -> tool started), {len(latencies)} runs: "
          f"p50 {statistics.median(latencies):.3f} s, p95 {quantiles[18]:.3f} s, max {max(latencies):.3f} s  "
          f"[target p50 <= 0.25 s]", flush=True)  # fmt: skip

    result = burst(bench, args.burst)
    counts: dict[str, int] = {}
    for state in result["states"].values():
        counts[state] = counts.get(state, 0) + 1
    not_terminal = args.burst - len(result["states"])
    print(f"burst of {args.burst}: submitted in {result['submitted_seconds']:.1f} s, all terminal in "
          f"{result['all_terminal_seconds']:.1f} s, states {counts}, not terminal {not_terminal}, "
          f"crashed flow runs {crashed_flow_runs(result['ids'], bench)}  [target: all COMPLETE within 45 s]",
          flush=True)  # fmt: skip

    end_to_end = []
    for _ in range(10):
        calc = bench.wait(bench.submit()["id"])
        end_to_end.append((_parse(calc["finished_at"]) - _parse(calc["created_at"])).total_seconds())
    bare = bare_seconds(10)
    e2e = statistics.median(end_to_end)
    print(f"trivial calculation: end to end {e2e:.3f} s (created -> finished, median of 10) vs bare obabel "
          f"{bare:.3f} s: ratio {e2e / bare:.1f}x, overhead {e2e - bare:.3f} s  [target <= 0.2 s]",
          flush=True)  # fmt: skip

    sandboxed_ms, bare_ms = sandbox_startup_ms()
    print(f"sandbox start-up: +{sandboxed_ms - bare_ms:.1f} ms per tool (`true` through the local backend: "
          f"{sandboxed_ms:.1f} ms in bubblewrap vs {bare_ms:.1f} ms bare, median of 40)  [target <= 20 ms]",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
