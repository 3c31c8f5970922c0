"""The demo, through the HTTP API as any client would: one `pipeline` request that calls a genome's
genes with prodigal and searches the proteins with a bundled profile HMM using hmmsearch, then a
short map (Open Babel over a few molecules); each step is printed as its state changes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).parent / "data"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


class Client:
    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        """The response's JSON object (every call here answers one); exits on an error status."""
        if response.status_code >= 400:
            raise SystemExit(
                f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text}"
            )
        body: dict[str, Any] = response.json()
        return body

    def upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as handle:
            return self._check(self.http.post("/files", files={"file": (path.name, handle)}))

    def content(self, file_id: str) -> str:
        response = self.http.get(f"/files/{file_id}/content")
        if response.status_code >= 400:
            self._check(response)
        return response.text


def _pipeline(client: Client, steps: dict[str, Any], title: str, timeout_seconds: float = 600) -> dict[str, Any]:
    """Launch the built-in `pipeline` workflow and print each step as its state changes."""
    started = time.monotonic()
    run = client._check(client.http.post("/workflows/pipeline/runs", json={"params": {"steps": steps}}))
    print(f"  {title}: workflow run {run['id']} {run['state']}", flush=True)
    seen: dict[tuple[str, int], str] = {}
    while True:
        run = client._check(client.http.get(f"/workflow-runs/{run['id']}"))
        for step in run["steps"]:
            key = (step["name"], step["index"])
            if seen.get(key) != step["state"]:
                seen[key] = step["state"]
                label = step["name"] + (f"[{step['index']}]" if step["index"] or len(run["steps"]) > 2 else "")
                print(f"    step {label:<12} {step['tool']:<10} {step['state']:<12} "
                      f"calculation {step['calculation_id']}", flush=True)  # fmt: skip
        if run["state"] in TERMINAL:
            break
        if time.monotonic() - started > timeout_seconds:
            raise SystemExit(f"workflow run {run['id']} still {run['state']} after {timeout_seconds} s")
        time.sleep(0.25)
    print(f"  {title}: {run['state']} in {time.monotonic() - started:.1f} s", flush=True)
    if run["state"] != "COMPLETE":
        raise SystemExit(f"workflow run {run['id']} ended {run['state']}: {run['error']}")
    return run


def _step(client: Client, run: dict[str, Any], name: str, index: int = 0) -> dict[str, Any]:
    step = next(s for s in run["steps"] if (s["name"], s["index"]) == (name, index))
    return client._check(client.http.get(f"/calculations/{step['calculation_id']}"))


MOLECULES = {"ethanol": "CCO", "caffeine": "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "aspirin": "CC(=O)OC1=CC=CC=C1C(=O)O",
             "benzene": "c1ccccc1"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("EMGAPI_PUBLIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", required=True)
    parser.add_argument(
        "--backend", default=os.environ.get("BACKEND") or None, help="local, container or slurm (default: the tool's)"
    )
    args = parser.parse_args()
    client = Client(args.url, args.token)
    # on a chosen backend, run it there for real, even if an identical calculation ran elsewhere
    where: dict[str, Any] = {"backend": args.backend, "use_cache": False} if args.backend else {}

    print("Demo 1: one pipeline request: genome -> prodigal -> hmmsearch on its proteins", flush=True)
    genome = client.upload(DATA / "genome.fna")
    profile = client.upload(DATA / "family.hmm")
    print(f"  uploaded {genome['name']} ({genome['size']} bytes) and {profile['name']}", flush=True)
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "meta"}, "inputs": {"contigs": f"file:{genome['id']}"},
                  **where},
        "hits": {"tool": "hmmsearch", "params": {"evalue": 1e-5},
                 "inputs": {"profile": f"file:{profile['id']}", "sequences": "genes.proteins"}, **where},
    }  # fmt: skip
    run = _pipeline(client, steps, "pipeline")
    prodigal, hmmsearch = _step(client, run, "genes"), _step(client, run, "hits")
    genes_gff = client.content(prodigal["outputs"]["genes"][0])
    gene_count = sum(1 for line in genes_gff.splitlines() if line and not line.startswith("#"))
    hits = [
        line.split()
        for line in client.content(hmmsearch["outputs"]["hits"][0]).splitlines()
        if line and not line.startswith("#")
    ]

    print("\nDemo 2: a map: Open Babel over a few molecules, one calculation each, in one workflow run", flush=True)
    smiles = [client._check(client.http.post("/files", files={"file": (f"{name}.smi", f"{text} {name}\n")}))
              for name, text in MOLECULES.items()]  # fmt: skip
    each = {"each": [f"file:{f['id']}" for f in smiles]}
    convert = {"convert": {"tool": "obabel", "params": {"output_format": "inchikey"}, "inputs": {"molecules": each},
                           **where}}  # fmt: skip
    mapped = _pipeline(client, convert, "map")

    print("\nResults")
    print(f"  prodigal:  {gene_count} genes called on {genome['name']}")
    print(f"  hmmsearch: {len(hits)} proteins match profile {hits[0][2] if hits else '-'} at E <= 1e-5")
    for fields in hits:
        print(f"    {fields[0]:<24} E-value {fields[4]:>9}  score {fields[5]}")
    print(f"  provenance: {hmmsearch['provenance']['attempts'][0]['argv'] if hmmsearch['attempts'] else 'cache hit'}")
    for index, name in enumerate(MOLECULES):
        calc = _step(client, mapped, "convert", index)
        print(f"  obabel:    {name:<9} InChIKey {client.content(calc['outputs']['molecules'][0]).split()[0]}")
    if not hits:
        sys.exit("demo failed: hmmsearch found no hits")


if __name__ == "__main__":
    main()
