"""What a flow run shows on its page in the Prefect dashboard, beyond its logs: a table artifact of
a calculation (its inputs, parameters, state, outputs with their size and sha256, and each attempt's
memory, time and CPUs given against used), or of a workflow
run (each step, its state and its calculation), a verifying rerun's verdict (one line, and each
step's beside it), and a map's progress as its steps finish ("N of M
steps done"). Its links open in an operator's browser: the admin pages of the calculation and of each
file, and each file's download through the admin (`calculations/admin_links.py`), not the API, whose
URLs need a bearer token."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from pydantic import ValidationError

from calculations.admin_links import admin_url, file_download_url
from calculations.models import Calculation, File, WorkflowRun
from calculations.provenance import Provenance
from calculations.usage import requested_vs_used
from workflows.db import db

logger = logging.getLogger(__name__)


def _link(text: Any, url: str) -> str:
    """A table cell or description line the dashboard renders as a link (it renders markdown)."""
    shown = str(text).replace("[", "(").replace("]", ")")
    return f"[{shown}]({url})"


def _file_row(kind: str, role: str, file: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": role,
        "value": _link(file["name"], admin_url("file", file["id"])),
        "size": file["size"],
        "sha256": file["sha256"],
        "link": _link("download", file_download_url(file["id"])),
    }


def calculation_table(calculation_id: UUID) -> tuple[list[dict[str, Any]], str]:
    """(rows, markdown description) of a calculation's artifact. Database thread."""
    calc = Calculation.objects.get(id=calculation_id)
    rows: list[dict[str, Any]] = []
    inputs = File.objects.filter(used_by__calculation_id=calculation_id).values(
        "used_by__role", "name", "size", "sha256", "id"
    )
    for file in inputs.order_by("used_by__role"):
        rows.append(_file_row("input", file["used_by__role"], file))
    for name, value in sorted(calc.params.items()):
        rows.append(
            {"kind": "parameter", "name": name, "value": json.dumps(value), "size": "", "sha256": "", "link": ""}
        )
    outputs = File.objects.filter(produced_by_id=calculation_id).order_by("output_role", "name")
    for output in outputs.values("output_role", "name", "size", "sha256", "id"):
        rows.append(_file_row("output", output["output_role"], output))
    rows.extend(_usage_rows(calc))
    description = (
        f"**{calc.tool} {calc.tool_version}**: {calc.state} (attempt {calc.attempt}, {calc.backend or 'local'})  \n"
        f"Calculation: {_link(calc.id, admin_url('calculation', calc.id))} (its provenance, outputs and logs)"
    )
    if calc.error:
        description += f"  \nError: {calc.error.strip().splitlines()[0][:300]}"
    description += _verdict_line(calc.verdict)
    return rows, description


def _usage_rows(calc: Calculation) -> list[dict[str, Any]]:
    """Each attempt's memory, time and CPUs: what it was given against what it used."""
    try:
        attempts = Provenance.model_validate(calc.provenance).attempts
    except ValidationError:
        return []
    return [
        {
            "kind": "usage",
            "name": f"attempt {record.attempt} {row.resource}",
            "value": f"given {row.granted}, used {row.used}" + (f" ({row.share})" if row.share else ""),
            "size": "",
            "sha256": "",
            "link": "",
        }  # fmt: skip
        for record in sorted(attempts, key=lambda r: r.attempt)
        for row in requested_vs_used(record)
    ]


def _verdict_line(verdict: Mapping[str, Any] | None) -> str:
    """A verifying rerun's verdict as one line of the description (nothing for any other run)."""
    if not verdict:
        return ""
    return f"  \nVerdict: **{verdict['outcome']}**: {str(verdict['summary'])[:1000]}"


def workflow_run_table(workflow_run_id: UUID) -> tuple[list[dict[str, Any]], str]:
    run = WorkflowRun.objects.get(id=workflow_run_id)
    steps = run.steps.order_by("created_at", "step", "step_index").values(
        "id", "step", "step_index", "tool", "state", "verdict"
    )
    rows = [
        {
            "step": s["step"],
            "index": s["step_index"] or 0,
            "tool": s["tool"],
            "state": s["state"],
            "calculation": _link(s["id"], admin_url("calculation", s["id"])),
            # a verifying rerun's: each step's outcome beside it
            **({"verdict": (s["verdict"] or {}).get("outcome", "")} if run.expected_steps is not None else {}),
        }  # fmt: skip
        for s in steps[:5000]
    ]
    description = (
        f"**{run.workflow}**: {run.state} (attempt {run.attempt})  \n"
        f"Workflow run: {_link(run.id, admin_url('workflowrun', run.id))}"
    )
    if run.error:
        description += f"  \nError: {run.error.strip().splitlines()[0][:300]}"
    description += _verdict_line(run.verdict)
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
    """A map's progress artifact, moved as its elements finish (at most every `every` seconds): its
    bar, and "N of M steps done"."""

    def __init__(self, total: int, every: float = 2.0) -> None:
        self.total, self.done, self.every = max(total, 1), 0, every
        self.artifact_id: UUID | None = None
        self._sent_at = 0.0

    def describe(self) -> str:
        return f"{self.done} of {self.total} steps done"

    async def start(self) -> None:
        try:
            self.artifact_id = await acreate_progress_artifact(0.0, description=self.describe())
        except Exception:
            logger.warning("could not create the progress artifact", exc_info=True)

    async def step_done(self, final: bool = False) -> None:
        self.done += 0 if final else 1
        if self.artifact_id is None or (not final and time.monotonic() - self._sent_at < self.every):
            return
        self._sent_at = time.monotonic()
        try:
            await aupdate_progress_artifact(self.artifact_id, 100.0 * self.done / self.total, self.describe())
        except Exception:
            logger.warning("could not update the progress artifact", exc_info=True)
