"""A GA4GH TES client's view: the real py-tes client runs prodigal on the demo genome and fetches
the proteins. Needs a platform with containers (README: "GA4GH TES"):

    python demo/tes_prodigal.py --token "$(./taskw token USER=alice)" --out out/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx
import tes

GENOME = Path(__file__).parent / "data" / "genome.fna"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("EMGAPI_TOKEN"), required="EMGAPI_TOKEN" not in os.environ)
    parser.add_argument("--genome", type=Path, default=GENOME)
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()
    http = httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=60)
    with args.genome.open("rb") as genome:
        uploaded = http.post("/api/v2/files", files={"file": (args.genome.name, genome)})
    uploaded.raise_for_status()

    client = tes.HTTPClient(args.url, token=args.token, timeout=60)
    task_id = client.create_task(
        tes.Task(
            name="prodigal-demo",
            inputs=[tes.Input(url=f"emgapi://files/{uploaded.json()['id']}", path="/data/genome.fna")],
            outputs=[tes.Output(path="/data/out/*", path_prefix="/data/out/")],
            executors=[
                tes.Executor(
                    image="emgapi/prodigal:2.6.3",
                    command=["prodigal", "-q", "-i", "/data/genome.fna", "-a", "proteins.faa", "-o", "genes.gff"],
                    workdir="/data/out",
                )
            ],
        )
    )
    print(f"task {task_id} submitted; waiting")
    client.wait(task_id, timeout=600)
    task = client.get_task(task_id, view="FULL")
    if task.state != "COMPLETE":
        sys.exit(f"task {task_id} ended {task.state}: {task.logs[-1].system_logs if task.logs else ''}")
    args.out.mkdir(parents=True, exist_ok=True)
    for output in task.logs[-1].outputs:
        target = args.out / Path(output.path).name
        target.write_bytes(http.get(output.url).raise_for_status().content)
        print(f"{output.path} -> {target} ({output.size_bytes} bytes)")


if __name__ == "__main__":
    main()
