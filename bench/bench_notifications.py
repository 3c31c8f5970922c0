"""Notifications: what asking for one adds to a run's state change, and the worker's memory while
1,000 deliveries are pending. In-process, on the platform's database (no server needed). See README.md.

    python bench/bench_notifications.py [--changes 400] [--pending 1000]

1. A state change (QUEUED → INITIALIZING: the guarded UPDATE, its event row and the commit), on runs
   that asked for no notification and on runs that asked to be told of INITIALIZING (the same, plus
   the outbox row), interleaved; the medians and what the notification adds.
2. 1,000 pending deliveries of 1,000 runs, sent by the worker's notifier (`workflows/worker/notifier.py`)
   to a receiver on 127.0.0.1 that answers each after 1 s (a slow receiver: deliveries stay in flight);
   the notifier process's resident memory at its peak over its baseline, with the default room
   (EMGAPI_NOTIFY__BATCH in flight) and with every one of the 1,000 in flight at once.

Everything it makes belongs to the user `bench-notifications`, and is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from calculations.actions import notifications  # noqa: E402
from calculations.actions.transitions import WORKER_ACTOR, transition  # noqa: E402
from calculations.models import Calculation, Notification  # noqa: E402
from calculations.states import RunState  # noqa: E402
from emgapiv2.config import get_settings  # noqa: E402
from workflows.worker.notifier import Notifier, make_client  # noqa: E402

USER = "bench-notifications"
BENCH_WORKER = "bench-notifier"
TARGET_ADDED_MS, TARGET_MB = 5.0, 50.0
# a receiver in a process of its own (its threads are not the notifier's memory) that answers after 1 s
RECEIVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Slow(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(1)
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass
class Server(ThreadingHTTPServer):
    request_queue_size = 2048
server = Server(("127.0.0.1", 0), Slow)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _runs(owner: Any, count: int, notify: dict[str, Any] | None) -> list[Any]:
    rows = [
        Calculation(owner=owner, tool="bench", tool_version="1", cache_key="0" * 64, backend="local", notify=notify)
        for _ in range(count)
    ]
    Calculation.objects.bulk_create(rows)
    return [row.id for row in rows]


def _change_ms(run_id: Any) -> float:
    started = time.perf_counter()
    with transaction.atomic():
        transition(run_id, 1, RunState.INITIALIZING, actor=WORKER_ACTOR, reason="bench")
    return (time.perf_counter() - started) * 1000


def state_changes(owner: Any, count: int) -> tuple[float, float]:
    """Median milliseconds of a state change without and with a notification asked for."""
    notify = {"url": "http://127.0.0.1:9/bench", "events": ["INITIALIZING"]}
    plain, notified = _runs(owner, count + 20, None), _runs(owner, count + 20, notify)
    for _ in range(20):  # the connection, the statement caches
        _change_ms(plain.pop())
        _change_ms(notified.pop())
    without: list[float] = []
    with_row: list[float] = []
    for a, b in zip(plain, notified, strict=True):
        without.append(_change_ms(a))
        with_row.append(_change_ms(b))
    assert Notification.objects.filter(owner=owner).count() == count + 20
    return statistics.median(without), statistics.median(with_row)


def _bench_rows(owner: Any, now: Any) -> Any:
    """The bench's rows not yet sent: those still under its first, hour-long lease (a claim's is shorter)."""
    first_lease = Notification.objects.filter(claimed_by=BENCH_WORKER, claimed_until__gt=now + timedelta(minutes=30))
    return first_lease.filter(owner=owner, status="pending").order_by("sequence", "id")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pending_memory(owner: Any, pending: int, batch: int, port: int) -> tuple[float, float, float]:
    """(baseline MB, peak MB over it, seconds to deliver them all) of the notifier sending `pending`."""
    Notification.objects.filter(owner=owner).delete()
    now = timezone.now()
    url = f"http://127.0.0.1:{port}/hook"
    # leased to this bench from the start: a worker of a running platform leaves them alone (it would
    # refuse 127.0.0.1, and give them up), and the bench's own claims take only these
    Notification.objects.bulk_create(
        Notification(owner=owner, kind="calculation", run_id=run_id, sequence=1, state="COMPLETE", url=url,
                     created_at=now, next_attempt_at=now, claimed_by=BENCH_WORKER,
                     claimed_until=now + timedelta(hours=1))
        for run_id in _runs(owner, pending, None)
    )  # fmt: skip
    notifications._due = lambda now: _bench_rows(owner, now)
    settings = get_settings().notify.model_copy(update={"batch": batch, "allowed_private_hosts": ["127.0.0.1"]})
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.02)

    async def deliver_all() -> float:
        async with make_client(settings) as client:
            notifier = Notifier(BENCH_WORKER, client, settings)  # as the worker's service runs it
            baseline = _rss_mb()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            while await notifier.fill() or notifier.in_flight:
                await asyncio.sleep(0.05)
            done.set()
            sampler.join()
            return baseline

    started = time.perf_counter()
    baseline = asyncio.run(deliver_all())
    seconds = time.perf_counter() - started
    delivered = Notification.objects.filter(owner=owner, status="delivered").count()
    assert delivered == pending, f"{delivered} of {pending} delivered"
    return baseline, peak[0] - baseline, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=400, help="state changes measured of each kind")
    parser.add_argument("--pending", type=int, default=1000)
    args = parser.parse_args()

    owner, _ = get_user_model().objects.get_or_create(username=USER)
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline())  # type: ignore[union-attr]
        print(f"notifications, on {connection.vendor} ({args.changes} state changes of each kind)")
        without, with_row = state_changes(owner, args.changes)
        added = with_row - without
        verdict = "met" if added <= TARGET_ADDED_MS else "MISSED"
        print(f"  state change: {without:.2f} ms without a notification, {with_row:.2f} ms with one (median)")
        print(f"state change, notification asked for: +{added:.2f} ms (target ≤ {TARGET_ADDED_MS:.0f} ms: {verdict})")
        default_batch = get_settings().notify.batch
        for batch in (default_batch, args.pending):
            baseline, grown, seconds = pending_memory(owner, args.pending, batch, port)
            verdict = "met" if grown <= TARGET_MB else "MISSED"
            print(
                f"{args.pending} pending deliveries, {batch} in flight: notifier +{grown:.1f} MB resident at its peak "
                f"(over {baseline:.0f} MB), all delivered in {seconds:.1f} s (target ≤ {TARGET_MB:.0f} MB: {verdict})"
            )
    finally:
        receiver.terminate()
        receiver.wait()
        Notification.objects.filter(owner=owner).delete()
        Calculation.objects.filter(owner=owner).delete()


if __name__ == "__main__":
    main()
