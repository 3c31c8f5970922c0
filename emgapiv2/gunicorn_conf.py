"""gunicorn settings for every way the API is served (`scripts/services.sh`, the app image):
`gunicorn -c python:emgapiv2.gunicorn_conf emgapiv2.wsgi`. WEB_WORKERS, WEB_THREADS and WEB_TIMEOUT
override the defaults."""

import multiprocessing
import os
import shutil
import tempfile
from typing import Any

import gunicorn.http.wsgi

# No version banner: "Server: gunicorn/23.0.0" tells a scanner which known flaws to try. gunicorn
# reads this name when it builds each response, so setting it here (in the master, before the
# workers fork) is enough.
gunicorn.http.wsgi.SERVER = "emgapi"

# Processes, one request at a time each: measured on 2 cores (bench/README.md), threads of one
# process contend for its GIL, and a keep-alive connection holds a thread, so 2 processes x 8
# threads answered 200 GET/s with p99 0.5 s where single-threaded processes stayed near 50 ms. A
# long download holds its process: in production a buffering proxy in front frees it early.
workers = int(os.environ.get("WEB_WORKERS") or 2 * multiprocessing.cpu_count() + 1)
threads = int(os.environ.get("WEB_THREADS") or 1)
timeout = int(os.environ.get("WEB_TIMEOUT") or 300)

# Prometheus' multiprocess mode (calculations/metrics.py): each process writes its counters and
# histograms to files in one directory, and GET /metrics, in whichever process answers, sums them.
# The master makes it, empty, before the workers fork (they inherit the variable), and removes it at exit.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="emgapi-metrics-")
    _own_metrics_dir = True
else:
    _own_metrics_dir = False


def child_exit(server: object, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
