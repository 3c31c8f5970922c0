"""gunicorn settings for every way the API is served (`scripts/services.sh`, the app image):
`gunicorn -c python:emgapiv2.gunicorn_conf emgapiv2.wsgi`. WEB_WORKERS, WEB_THREADS and WEB_TIMEOUT
override the defaults."""

import multiprocessing
import os

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
