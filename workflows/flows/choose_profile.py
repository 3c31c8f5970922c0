"""choose-profile: an example of a workflow that waits for an operator, in the spirit of emgapi-v2.

It calls the genes of several genomes, publishes their gene counts as a table artifact, and pauses
until an operator picks the profile HMM and the E-value (the dashboard's form, or
POST /api/v2/workflow-runs/{id}/resume {"input": {"profile": "<file id>", "evalue": 1e-5}}); then it
searches every genome's proteins with hmmsearch.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from pydantic import BaseModel, Field

from workflows.sdk import FileId, FileIds, pause_for_input, read_text, run_tool

MAX_PAUSE_SECONDS = 7 * 24 * 3600


class ProfileChoice(BaseModel):
    # FileId: the API checks that the file is the resuming user's before the run continues
    profile: FileId = Field(description="File id of the profile HMM to search with (one of yours).")
    evalue: float = Field(1e-5, gt=0, description="Report hits at or below this E-value.")


@flow(name="choose-profile", persist_result=False)
async def choose_profile(
    genomes: FileIds,
    pause_timeout_seconds: Annotated[int, Field(gt=0, le=MAX_PAUSE_SECONDS)] | None = None,
) -> dict[str, list[str]]:
    """Call genes on each genome (prodigal), show their counts, wait for an operator to choose the
    profile and E-value, then search every genome's proteins (hmmsearch)."""
    called = await asyncio.gather(
        *(run_tool("prodigal", inputs={"contigs": g}, params={"mode": "meta"}) for g in genomes)
    )
    counts = [
        {"genome": str(genome), "genes": (await read_text(genes.outputs["proteins"])).count(">"),
         "calculation": str(genes.calculation_id)}
        for genome, genes in zip(genomes, called, strict=True)
    ]  # fmt: skip
    await acreate_table_artifact(counts, key="called-genes", description="Genes called on each genome")
    choice = await pause_for_input(
        ProfileChoice,
        description=f"Genes are called on {len(genomes)} genome(s) (see the table). "
        "Choose the **profile HMM** (a file id) and the **E-value** to search their proteins with.",
        timeout_seconds=pause_timeout_seconds,
    )
    searched = await asyncio.gather(
        *(
            run_tool("hmmsearch", inputs={"profile": choice.profile, "sequences": c.outputs["proteins"]},
                     params={"evalue": choice.evalue})
            for c in called
        )
    )  # fmt: skip
    return {"hits": [str(s.outputs["hits"]) for s in searched]}
