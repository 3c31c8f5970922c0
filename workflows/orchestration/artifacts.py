"""What a flow run shows on its page in the Prefect dashboard, beyond its logs: a table artifact of
a calculation (its inputs, parameters, state, outputs with their size and sha256, and links to the
API: the calculation, each output's download), or of a workflow run (each step, its state and its
calculation's link), and a map's progress as its steps finish."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate

from calculations.models import Calculation, File, WorkflowRun
from emgapiv2.config import get_settings
from workflows.db import db

logger = logging.getLogger(__name__)


def _api(path: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/v2{path}"


def calculation_table(calculation_id: UUID) -> tuple[list[dict[str, Any]], str]:
    """(rows, markdown description) of a calculation's artifact. Database thread."""
    calc = Calculation.objects.get(id=calculation_id)
    rows: list[dict[str, Any]] = []
    inputs = File.objects.filter(used_by__calculation_id=calculation_id).values(
        "used_by__role", "name", "size", "sha256", "id"
    )
    for file in inputs.order_by("used_by__role"):
        rows.append({"kind": "input", "name": file["used_by__role"], "value": file["name"], "size": file["size"],
                     "sha256": file["sha256"], "link": _api(f"/files/{file['id']}/content")})  # fmt: skip
    for name, value in sorted(calc.params.items()):
        rows.append(
            {"kind": "parameter", "name": name, "value": json.dumps(value), "size": "", "sha256": "", "link": ""}
        )
    outputs = File.objects.filter(produced_by_id=calculation_id).order_by("output_role", "name")
    for output in outputs.values("output_role", "name", "size", "sha256", "id"):
        rows.append({"kind": "output", "name": output["output_role"], "value": output["name"], "size": output["size"],
                     "sha256": output["sha256"], "link": _api(f"/files/{output['id']}/content")})  # fmt: skip
    description = (
        f"**{calc.tool} {calc.tool_version}**: {calc.state} (attempt {calc.attempt}, {calc.backend or 'local'})  \n"
        f"Calculation: {_api(f'/calculations/{calc.id}')}"
    )
    if calc.error:
        description += f"  \nError: {calc.error.strip().splitlines()[0][:300]}"
    return rows, description


def workflow_run_table(workflow_run_id: UUID) -> tuple[list[dict[str, Any]], str]:
    run = WorkflowRun.objects.get(id=workflow_run_id)
    steps = run.steps.order_by("created_at", "step", "step_index").values("id", "step", "step_index", "tool", "state")
    rows = [
        {
            "step": s["step"],
            "index": s["step_index"] or 0,
            "tool": s["tool"],
            "state": s["state"],
            "calculation": _api(f"/calculations/{s['id']}"),
        }  # fmt: skip
        for s in steps[:5000]
    ]
    description = (
        f"**{run.workflow}**: {run.state} (attempt {run.attempt})  \nWorkflow run: {_api(f'/workflow-runs/{run.id}')}"
    )
    if run.error:
        description += f"  \nError: {run.error.strip().splitlines()[0][:300]}"
    return rows, description


async def publish_table(flow_run_id: UUID, rows: list[dict[str, Any]], description: str) -> None:
    """Attach the table to the flow run (best effort: a dashboard nicety never fails a run)."""
    try:
        async with get_client() as client:
            await client.create_artifact(
                ArtifactCreate(type="table", data=json.dumps(rows), description=description, flow_run_id=flow_run_id)
            )
    except Exception:
        logger.warning("could not publish the artifact of flow run %s", flow_run_id, exc_info=True)


async def publish_calculation(flow_run_id: UUID, calculation_id: UUID) -> None:
    rows, description = await db(calculation_table)(calculation_id)
    await publish_table(flow_run_id, rows, description)


async def publish_workflow_run(flow_run_id: UUID, workflow_run_id: UUID) -> None:
    rows, description = await db(workflow_run_table)(workflow_run_id)
    await publish_table(flow_run_id, rows, description)


class Progress:
    """A map's progress artifact, moved as its elements finish (at most every `every` seconds)."""

    def __init__(self, total: int, every: float = 2.0) -> None:
        self.total, self.done, self.every = max(total, 1), 0, every
        self.artifact_id: UUID | None = None
        self._sent_at = 0.0

    async def start(self) -> None:
        try:
            self.artifact_id = await acreate_progress_artifact(0.0, description=f"steps done, of {self.total}")
        except Exception:
            logger.warning("could not create the progress artifact", exc_info=True)

    async def step_done(self, final: bool = False) -> None:
        self.done += 0 if final else 1
        if self.artifact_id is None or (not final and time.monotonic() - self._sent_at < self.every):
            return
        self._sent_at = time.monotonic()
        try:
            await aupdate_progress_artifact(self.artifact_id, 100.0 * self.done / self.total)
        except Exception:
            logger.warning("could not update the progress artifact", exc_info=True)
