"""GA4GH TES: `POST /tasks` → RUNNING latency (p50), with the real py-tes client. See README.md.

A TES task runs in a container, so this needs a platform whose container backend is enabled
(`task engines-up`, `task images`, EMGAPI_EXECUTION__ENABLED with "container"); on the embedded
defaults the server refuses tasks, and this prints why instead of a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import tes
from bench_user import bench_token
from requests import HTTPError

IMAGE = "emgapi/obabel:3.1.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    client = tes.HTTPClient(args.url, token=bench_token(args.runs), timeout=60)
    task = tes.Task(
        name="bench",
        inputs=[tes.Input(content="CCO\n", path="/data/in.smi")],
        outputs=[tes.Output(path="/data/out.inchikey")],
        executors=[tes.Executor(image=IMAGE, command=["obabel", "/data/in.smi", "-O", "/data/out.inchikey"])],
    )
    latencies, totals = [], []
    for _ in range(args.runs):
        posted = time.monotonic()
        try:
            task_id = client.create_task(task)
        except HTTPError as exc:
            answer = exc.response
            print(f"TES tasks refused here: {answer.status_code}: {answer.text}" if answer is not None else exc)
            return
        running = None
        while (state := client.get_task(task_id).state) not in {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"}:
            if running is None and state == "RUNNING":
                running = time.monotonic() - posted
            time.sleep(0.02)
        if state != "COMPLETE":
            sys.exit(f"task {task_id} ended {state}: {client.get_task(task_id, 'FULL').logs}")
        totals.append(time.monotonic() - posted)
        latencies.append(running if running is not None else totals[-1])  # too quick to see RUNNING: an upper bound
    print(f"TES POST /tasks -> RUNNING, {args.runs} tasks one after another (obabel in its container):")
    print(f"  p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s")
    print(f"  POST -> COMPLETE (container start, tool, outputs stored): p50 {statistics.median(totals):.2f} s")


if __name__ == "__main__":
    main()
