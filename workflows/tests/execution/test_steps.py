"""A flow's steps are created in batches, in the order asked, each refused or created on its own."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from workflows.execution import steps
from workflows.execution.steps import StepCall, StepFailed, create_step
from workflows.execution.workflow_context import WorkflowContext


def test_steps_asked_at_once_are_created_in_batches_in_order_and_a_gone_caller_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[list[int]] = []

    def create(context: WorkflowContext, calls: list[StepCall]) -> list[Any]:  # (the database, elsewhere)
        batches.append([call.index for call in calls])
        return [
            StepFailed(call.name, call.index, call.tool, "not started", "refused", None)
            if call.index == 7
            else call.index
            for call in calls
        ]

    monkeypatch.setattr(steps, "_create_steps", create)

    async def main() -> list[Any]:
        context = WorkflowContext(uuid4(), 1, uuid4(), asyncio.Semaphore(1000))
        calls = [StepCall("convert", i, "obabel", {}, None, None, False) for i in range(45)]
        tasks = [asyncio.create_task(create_step(context, call)) for call in calls]
        await asyncio.sleep(0)
        tasks[30].cancel()  # its flow gave up on it before its batch
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert len(batches) == 3 and all(len(batch) <= steps.CREATION_BATCH for batch in batches)
    assert sum(batches, []) == [i for i in range(45) if i != 30]  # each once, in order, the gone one never
    assert isinstance(results[7], StepFailed) and isinstance(results[30], asyncio.CancelledError)
    assert [result for i, result in enumerate(results) if i not in (7, 30)] == [
        i for i in range(45) if i not in (7, 30)
    ]
