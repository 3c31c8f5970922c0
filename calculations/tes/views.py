"""A stored task as TES shows it, in each view: MINIMAL (id and state), BASIC (all but executors'
stdout/stderr, inline input content and system logs) and FULL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from calculations.models import Calculation, TesTask
from calculations.provenance import Provenance
from calculations.tes.schemas import ExecutorLogOut, OutputFileLogOut, TaskLogOut, TaskOut, View
from emgapiv2.config import get_settings


def file_url(file_id: Any) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/v2/files/{file_id}/content"


def _first_start(started_at: datetime | None, executors: list[dict[str, Any]]) -> datetime | None:
    """The attempt's start: its job's, or its first executor's if that was earlier (submitted first)."""
    times = [datetime.fromisoformat(log["start_time"]) for log in executors[:1]]
    if started_at is not None:
        times.append(started_at)
    return min(times) if times else None


def _task_logs(calc: Calculation, tes: TesTask, full: bool) -> list[TaskLogOut]:
    provenance = Provenance.model_validate(calc.provenance)
    records = {record.attempt: record for record in provenance.attempts}
    # a stored output's URL, by the container path the worker found it at
    files = {(file.output_role, file.name): file for file in calc.output_files.all()}
    logs = []
    for attempt in range(1, calc.attempt + 1):
        stored: dict[str, Any] = tes.logs.get(str(attempt), {})
        record = records.get(attempt)
        if record is None and not stored:
            continue
        outputs = []
        for output in stored.get("outputs", []):
            file = files.get((output["role"], output["name"]))
            if file is not None:
                outputs.append(OutputFileLogOut(url=file_url(file.id), path=output["path"], size_bytes=str(file.size)))
        system_logs = list(stored.get("system_logs", []))
        if attempt == calc.attempt and calc.error:
            system_logs.append(calc.error)
        logs.append(
            TaskLogOut(
                logs=[
                    ExecutorLogOut(
                        start_time=log.get("start_time"),
                        end_time=log.get("end_time"),
                        exit_code=log.get("exit_code", -1) if log.get("exit_code") is not None else -1,
                        stdout=log.get("stdout", "") if full else None,
                        stderr=log.get("stderr", "") if full else None,
                    )
                    for log in stored.get("logs", [])
                ],
                metadata={
                    "calculation": str(calc.id),
                    "attempt": str(attempt),
                    "backend": record.backend if record else "",
                },
                start_time=_first_start(record.started_at if record else None, stored.get("logs", [])),
                end_time=record.finished_at if record else None,
                outputs=outputs,
                system_logs=system_logs if full else None,
            )
        )
    return logs


def task_out(tes: TesTask, view: View) -> TaskOut:
    calc = tes.calculation
    if view is View.MINIMAL:
        return TaskOut(id=str(calc.id), state=calc.state)
    task: dict[str, Any] = tes.spec.get("task", {})
    inputs = task.get("inputs")
    if inputs is not None and view is not View.FULL:
        inputs = [{key: value for key, value in item.items() if key != "content"} for item in inputs]
    return TaskOut(
        id=str(calc.id),
        state=calc.state,
        name=tes.name or None,
        description=tes.description or None,
        inputs=inputs,
        outputs=task.get("outputs"),
        resources=task.get("resources"),
        executors=task.get("executors"),
        volumes=task.get("volumes"),
        tags=tes.tags or None,
        logs=_task_logs(calc, tes, full=view is View.FULL),
        creation_time=calc.created_at,
    )
