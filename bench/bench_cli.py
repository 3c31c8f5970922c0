"""The `emgapi` command end to end against the same calculation driven with curl. See README.md.

One trivial calculation (Open Babel converting one SMILES to an InChIKey, `use_cache: false`), from a
local file to its output on local disk, each way N times, alternating:
- `emgapi run obabel --input molecules=mol.smi --param output_format=inchikey --no-cache --download DIR`
  (one process: upload with its sha256 checked, submit, wait, download with its sha256 checked);
- curl processes as a shell script would run them: upload, submit, poll the calculation (on the
  client's own schedule: 0.1 s, then 1.5 times longer each time, at most 1 s), download its output.
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
from pathlib import Path
from typing import Any

from bench_user import bench_token

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
EMGAPI = Path(sys.executable).parent / "emgapi"


def run_cli(url: str, token: str, workdir: Path) -> float:
    out = workdir / "cli-out"
    argv = [str(EMGAPI), "run", "obabel", "--input", "molecules=mol.smi", "--param", "output_format=inchikey",
            "--no-cache", "--download", str(out), "--json"]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=workdir, env=_env(url, token), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"emgapi failed ({result.returncode}): {result.stderr}")
    if not (out / "molecules.inchikey").read_text().strip():
        raise SystemExit("emgapi downloaded an empty output")
    return elapsed


def _env(url: str, token: str) -> dict[str, str]:
    return {**os.environ, "EMGAPI_URL": url, "EMGAPI_TOKEN": token}


def _curl(url: str, token: str, *args: str) -> Any:
    argv = ["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {token}", *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"curl {' '.join(args)} failed ({result.returncode}): {result.stdout} {result.stderr}")
    return json.loads(result.stdout) if result.stdout.strip() else None


def run_curl(url: str, token: str, workdir: Path) -> float:
    api = f"{url}/api/v2"
    out = workdir / "curl-out"
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    file = _curl(url, token, "-F", f"file=@{workdir / 'mol.smi'}", f"{api}/files")
    body = {"inputs": {"molecules": file["id"]}, "params": {"output_format": "inchikey"}, "use_cache": False}
    calc = _curl(url, token, "-H", "Content-Type: application/json", "-d", json.dumps(body),
                 f"{api}/tools/obabel/calculations")  # fmt: skip
    pause = 0.1
    while calc["state"] not in TERMINAL:
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)
        calc = _curl(url, token, f"{api}/calculations/{calc['id']}")
    if calc["state"] != "COMPLETE":
        raise SystemExit(f"calculation {calc['id']} ended {calc['state']}: {calc['error']}")
    (output,) = calc["outputs"]["molecules"]
    subprocess.run(["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {token}", "-OJ", "--output-dir", str(out),
                    f"{api}/files/{output}/content"], check=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    target = out / "molecules.inchikey"
    if not target.read_text().strip():
        raise SystemExit("curl downloaded an empty output")
    target.unlink()  # curl -OJ will not overwrite it next time
    return elapsed


def startup_seconds(runs: int = 10) -> float:
    """The `emgapi` process alone (interpreter, typer, rich, httpx): `emgapi --version`, median."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(EMGAPI), "--version"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not EMGAPI.exists():
        raise SystemExit(f"{EMGAPI} is missing: scripts/bootstrap.sh installs the client")
    token = bench_token(1)
    cli, curl = [], []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        (workdir / "mol.smi").write_text("CCO ethanol\n")
        run_cli(args.url, token, workdir)  # warm up both paths (the first run pays for cold caches)
        run_curl(args.url, token, workdir)
        for _ in range(args.runs):
            cli.append(run_cli(args.url, token, workdir))
            curl.append(run_curl(args.url, token, workdir))
    cli_median, curl_median = statistics.median(cli), statistics.median(curl)
    print(f"emgapi run obabel (upload + submit + wait + download), median of {args.runs}: {cli_median:.3f} s "
          f"(min {min(cli):.3f}, max {max(cli):.3f}); the same with curl: {curl_median:.3f} s "
          f"(min {min(curl):.3f}, max {max(curl):.3f}); difference {cli_median - curl_median:+.3f} s; "
          f"emgapi start-up alone {startup_seconds():.3f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
