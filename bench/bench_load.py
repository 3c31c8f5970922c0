"""Read load on the API: GET /api/v2/calculations/{id} at a fixed rate (open loop), 20 s per rate.

Open loop: each request is sent at its scheduled time whether or not earlier ones have answered, and
its latency counts from that time, so a server that falls behind shows it (a closed loop would
slow down with the server and hide it). The client runs on the same machine as the server: its
own CPU is part of the figure. Start the platform first (`./taskw start`), then:

    python bench/bench_load.py                 # 100, 200 and 400 requests/s, 20 s each
    python bench/bench_load.py --rates 200 --seconds 20

Against another deployment (the compose stack: `task stack-up`), give its URL and a token of its own
in EMGAPI_TOKEN (as the `emgapi` client takes it; never on the command line, which `ps` shows):

    EMGAPI_TOKEN=$(docker-compose -p emgapi exec -T api python manage.py create_token bench | tail -1) \
        python bench/bench_load.py --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx
from bench_user import bench_token

# Requests in flight at once. More would not load the server more (it has a handful of processes),
# and httpx's pool grows slow (quadratic) with thousands of waiting requests: the client, not the
# server, would then be measured. A request that must wait for a slot still counts its wait.
IN_FLIGHT = 64


async def _one(
    client: httpx.AsyncClient,
    slots: asyncio.Semaphore,
    path: str,
    scheduled: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    try:
        async with slots:
            response = await client.get(path)
        if response.status_code != 200:
            errors.append(str(response.status_code))
    except httpx.HTTPError as exc:
        errors.append(type(exc).__name__)
    latencies.append(time.perf_counter() - scheduled)


async def run_rate(url: str, token: str, path: str, rate: float, seconds: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    slots = asyncio.Semaphore(IN_FLIGHT)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        await client.get(path)  # warm: connection, caches
        start, tasks = time.perf_counter(), []
        for n in range(int(rate * seconds)):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, slots, path, scheduled, latencies, errors)))
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000

    return {
        "sent": len(latencies),
        "errors": len(errors),
        "p50": quantile(0.50),
        "p95": quantile(0.95),
        "p99": quantile(0.99),
        "mean": statistics.mean(ordered) * 1000,
    }


def _a_calculation(url: str, token: str) -> str:
    http = httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    upload = http.post("/files", files={"file": ("load.smi", b"CCO\n")}).json()
    answer = http.post("/tools/obabel/calculations", json={"inputs": {"molecules": upload["id"]}})
    return str(answer.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 200, 400])
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    token = os.environ.get("EMGAPI_TOKEN") or bench_token(10)
    path = f"/api/v2/calculations/{_a_calculation(args.url, token)}"
    for rate in args.rates:
        result = asyncio.run(run_rate(args.url, token, path, rate, args.seconds))
        print(
            f"GET /calculations/{{id}} at {rate:.0f}/s for {args.seconds:.0f} s (open loop): "
            f"p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms, p99 {result['p99']:.1f} ms, "
            f"{result['errors']:.0f} errors of {result['sent']:.0f}"
            + ("  [target at 200/s: p99 <= 50 ms, no errors]" if rate == 200 else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
