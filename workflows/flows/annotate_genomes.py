"""annotate-genomes: an example of a flow an ops engineer writes with the SDK (workflows/README.md).

Deploy it with `task deploy-flow FLOW=annotate_genomes`; launch it with
`POST /api/v2/workflows/annotate-genomes/runs {"params": {"genomes": [<file id>, …], "profile": <file id>}}`.
"""

from __future__ import annotations

import asyncio

from prefect import flow

from workflows.sdk import FileId, FileIds, run_tool


@flow(name="annotate-genomes", persist_result=False)
async def annotate_genomes(genomes: FileIds, profile: FileId, evalue: float = 1e-5) -> dict[str, list[str]]:
    """Call the genes of each genome (prodigal), then search their proteins for a profile (hmmsearch).
    Returns the hits table of each genome, in order."""
    called = await asyncio.gather(*(run_tool("prodigal", inputs={"contigs": genome}) for genome in genomes))
    searched = await asyncio.gather(
        *(
            run_tool(
                "hmmsearch",
                inputs={"profile": profile, "sequences": genes.outputs["proteins"]},
                params={"evalue": evalue},
            )
            for genes in called
        )
    )
    return {"hits": [str(result.outputs["hits"]) for result in searched]}
