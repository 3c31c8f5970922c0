"""A verifying rerun's verdict, recorded by the action that ends it (`attempts.do_end_attempt` for a
calculation, `workflow_runs.do_end_workflow_run` for a workflow run, step by step): whether it
reproduced the outputs it was created to reproduce (`calculations/verdicts.py` compares)."""

from __future__ import annotations

from typing import Any

from calculations.models import Calculation, WorkflowRun
from calculations.states import RunState
from calculations.tools import UnknownTool, get_tool
from calculations.verdicts import (
    ExpectedStep,
    StepVerdict,
    Verdict,
    aggregate_steps,
    compare_outputs,
    not_reproduced,
    step_key,
)

S = RunState
_FILE_FIELDS = ("output_role", "name", "sha256", "size")


def calculation_verdict(calc: Calculation) -> Verdict:
    """An ended calculation's outputs against its expected ones, as its tool declares it may differ."""
    if calc.state != S.COMPLETE:
        return not_reproduced(calc.state, calc.error)
    try:
        spec = get_tool(calc.tool)
        nondeterministic = spec.nondeterministic
        timestamped = frozenset(role.name for role in spec.outputs if role.carries_timestamps)
    except UnknownTool:  # unregistered since it was created: no declaration to excuse a difference
        nondeterministic, timestamped = False, frozenset()
    return compare_outputs(
        calc.expected_outputs or {},
        calc.output_files.values(*_FILE_FIELDS),
        nondeterministic=nondeterministic,
        timestamped_roles=timestamped,
    )


def record_calculation_verdict(calc: Calculation) -> None:
    """Within the action that ended `calc` (its row locked): its verdict, if it verifies something."""
    if calc.expected_outputs is None:
        return
    calc.verdict = calculation_verdict(calc).model_dump(mode="json")
    calc.save(update_fields=["verdict", "updated_at"])


def _step_verdict(expected: ExpectedStep, calc: Calculation | None) -> StepVerdict:
    head = {"step": expected.step, "index": expected.index, "tool": expected.tool}
    if calc is None:
        return StepVerdict(**head, outcome="different", summary="missing: the rerun never ran this step")
    verdict = Verdict.model_validate(calc.verdict) if calc.verdict else calculation_verdict(calc)
    return StepVerdict(
        **head, outcome=verdict.outcome, summary=verdict.summary, calculation_id=str(calc.id), outputs=verdict.outputs
    )


def workflow_run_verdict(run: WorkflowRun) -> Verdict:
    """An ended workflow run's steps against the ones expected, matched by (step, index)."""
    expected = [ExpectedStep.model_validate(step) for step in (run.expected_steps or {}).values()]
    ran = {(calc.step, calc.step_index or 0): calc for calc in run.steps.all()}
    steps = [_step_verdict(e, ran.pop((e.step, e.index), None)) for e in sorted(expected, key=_order)]
    steps += [
        StepVerdict(
            step=calc.step, index=calc.step_index or 0, tool=calc.tool, outcome="different",
            summary="extra: the run it repeats has no such step", calculation_id=str(calc.id),
        )
        for _, calc in sorted(ran.items(), key=lambda item: item[0])
    ]  # fmt: skip
    if run.state != S.COMPLETE:
        verdict = not_reproduced(run.state, run.error)
        verdict.steps = steps
        return verdict
    return aggregate_steps(steps)


def _order(step: ExpectedStep) -> tuple[str, int]:
    return step.step, step.index


def record_workflow_run_verdict(run: WorkflowRun) -> None:
    """Within the action that ended `run` (its row locked): its verdict, if it verifies something."""
    if run.expected_steps is None:
        return
    run.verdict = workflow_run_verdict(run).model_dump(mode="json")
    run.save(update_fields=["verdict", "updated_at"])


def expected_step_of(run: WorkflowRun, step: str, index: int) -> dict[str, Any] | None:
    """What step (`step`, `index`) of a verifying run should reproduce: its expected outputs (None for a
    step the run it repeats did not have: it is then compared to nothing, and the verdict names it)."""
    found = (run.expected_steps or {}).get(step_key(step, index))
    if found is None:
        return None
    outputs: dict[str, Any] = ExpectedStep.model_validate(found).model_dump(mode="json")["outputs"]
    return outputs
