"""The API as gunicorn serves it: no version banner, answers never cached."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from emgapiv2.config import BASE_DIR


def test_gunicorn_shows_no_version_banner_and_answers_are_not_cached() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:emgapiv2.gunicorn_conf", "emgapiv2.wsgi",
            "--bind", f"127.0.0.1:{port}", "--workers", "1"]  # fmt: skip
    env = {
        **os.environ,
        "EMGAPI_PREFECT__API_URL": "http://127.0.0.1:9/api",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    server = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v2/files", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
        assert answer.status_code == 401
        assert answer.headers["Server"] == "emgapi"  # not "gunicorn/<version>"
        assert answer.headers["Cache-Control"] == "no-store"
    finally:
        server.terminate()
        server.wait(10)
