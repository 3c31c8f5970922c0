"""pipeline: a user-defined DAG of registered tools, posted as data (`calculations/pipelines.py`).

Every step, and every element of a mapped one, is started as soon as the outputs it takes exist:
independent steps run concurrently, and element i of a step mapped along with another starts when
that step's element i completes. A step that fails (or that someone cancels) stops the run: the steps
that take its outputs never start, and those in flight are canceled; the run fails with the first
step's error, which names it, its element in a map, and the tool's message. `map` is simply a one-step
pipeline with `each`.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from prefect import flow

from calculations.pipelines import PipelineStep, PlannedStep, Ref, plan
from workflows.orchestration.artifacts import Progress
from workflows.sdk import StepFailed, StepResult, cancel_running_steps, run_tool


class UpstreamFailed(Exception):
    """This element was never started: a step whose outputs it takes did not complete."""


@flow(name="pipeline", persist_result=False, log_prints=False)
async def pipeline(steps: dict[str, PipelineStep]) -> dict[str, Any]:
    """Run a DAG of registered tools: each step names its tool, its parameters, and for each input a
    file ('file:<id>'), another step's output ('<step>.<role>'), or {'each': [...]} of those to map it."""
    planned = plan({"steps": {name: step.model_dump() for name, step in steps.items()}})
    by_name = {step.name: step for step in planned}
    elements: dict[tuple[str, int], asyncio.Task[StepResult]] = {}

    async def resolve(ref: Ref, index: int) -> UUID:
        if ref.file_id is not None:
            return ref.file_id
        upstream = by_name[ref.step]
        try:
            result = await elements[ref.step, index if upstream.width else 0]
        except (StepFailed, UpstreamFailed):
            raise UpstreamFailed(ref.step) from None
        files = result.files.get(ref.role, [])
        if len(files) != 1:
            found = "none" if not files else f"{len(files)} files"
            message = f"output {ref.role!r} has {found}; a step input takes one"
            raise StepFailed(upstream.name, index, upstream.tool, "unusable", message, result.calculation_id)
        return files[0]

    first_failure: list[StepFailed] = []
    total = sum(step.width or 1 for step in planned)
    progress = Progress(total) if total > 1 else None  # a map's progress, moved as its elements finish
    if progress is not None:
        await progress.start()

    async def run_element(step: PlannedStep, index: int) -> StepResult:
        try:
            inputs = {role: await resolve(ref, index) for role, ref in step.refs_for(index).items()}
            if first_failure:
                raise UpstreamFailed(first_failure[0].step)
            try:
                result = await run_tool(
                    step.tool,
                    inputs,
                    step.params,
                    step.backend,
                    step=step.name,
                    index=index,
                    use_cache=step.use_cache,
                    resources=step.resources,
                    retry=step.retry,
                )
            except StepFailed as exc:
                raise (exc.as_element() if step.width else exc) from None
            if progress is not None:
                await progress.step_done()
            return result
        except StepFailed as exc:
            if not first_failure:  # the run stops here: what is still running is canceled
                first_failure.append(exc)
                await cancel_running_steps(f"step {exc.step!r} failed")
            raise

    for step in planned:  # in dependency order: each element's upstream tasks exist already
        for index in range(step.width or 1):
            elements[step.name, index] = asyncio.create_task(run_element(step, index))
    outcomes = await asyncio.gather(*elements.values(), return_exceptions=True)
    if progress is not None:
        await progress.step_done(final=True)
    if first_failure:
        raise first_failure[0]
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    summary: dict[str, Any] = {}
    for (name, _index), task in elements.items():
        summary.setdefault(name, []).append(str(task.result().calculation_id))
    return {"steps": summary}
