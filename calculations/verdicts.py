"""Whether a rerun reproduced what was expected (issue 20): the schemas of `Calculation.expected_outputs`,
`Calculation.verdict`, `WorkflowRun.expected_steps` and `WorkflowRun.verdict`, and the pure functions
that compare. The expectation comes from a local calculation (a rerun) or, later, from a crate: both
are the same {role: [{name, sha256, size}]}.

Outcomes, from best to worst: "identical" (every output has the expected sha256, none missing, none
extra); "differs" (only outputs the tool declares may differ: it is nondeterministic, or they carry
timestamps); "different" (an undeclared output differs, or one is missing or extra); "not reproduced"
(the rerun did not COMPLETE, so nothing could be compared).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Outcome = Literal["identical", "differs", "different", "not reproduced"]
OutputStatus = Literal["identical", "differs", "expected to differ", "different", "missing", "extra"]
_RANK: dict[str, int] = {"identical": 0, "differs": 1, "different": 2, "not reproduced": 3}

NONDETERMINISTIC_NOTE = "the tool declares it nondeterministic"
TIMESTAMPS_NOTE = "carries timestamps"


class ExpectedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str
    size: int


ExpectedOutputs = dict[str, list[ExpectedFile]]  # role -> files


class ExpectedStep(BaseModel):
    """A step a workflow run's rerun is expected to repeat: its tool and outputs."""

    model_config = ConfigDict(extra="forbid")

    step: str
    index: int
    tool: str
    outputs: ExpectedOutputs


class OutputVerdict(BaseModel):
    role: str
    name: str
    status: OutputStatus
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    expected_size: int | None = None
    actual_size: int | None = None
    note: str = ""  # why a difference is not a failure


class StepVerdict(BaseModel):
    step: str
    index: int
    tool: str
    outcome: Outcome
    summary: str
    calculation_id: str | None = None
    outputs: list[OutputVerdict] = []


class Verdict(BaseModel):
    """What `Calculation.verdict` and `WorkflowRun.verdict` hold (a calculation's has no steps)."""

    outcome: Outcome
    summary: str  # one line a person reads
    outputs: list[OutputVerdict] = []
    steps: list[StepVerdict] = []


def expected_outputs(files: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{role: [{name, sha256, size}]} (JSON) of output files given as {output_role, name, sha256, size}."""
    by_role: dict[str, list[ExpectedFile]] = {}
    for file in files:
        by_role.setdefault(file["output_role"], []).append(
            ExpectedFile(name=file["name"], sha256=file["sha256"], size=file["size"])
        )
    return {role: [f.model_dump() for f in sorted(fs, key=lambda f: f.name)] for role, fs in sorted(by_role.items())}


def compare_outputs(
    expected: Mapping[str, Any],
    actual: Iterable[Mapping[str, Any]],
    *,
    nondeterministic: bool = False,
    timestamped_roles: frozenset[str] = frozenset(),
) -> Verdict:
    """The verdict of a COMPLETE rerun: its output files ({output_role, name, sha256, size}) against
    `expected`, matched by (role, name)."""
    wanted = {
        (role, f.name): f for role, files in expected.items() for f in (ExpectedFile.model_validate(x) for x in files)
    }
    got = {(file["output_role"], file["name"]): file for file in actual}
    verdicts: list[OutputVerdict] = []
    for key in sorted(wanted.keys() | got.keys()):
        role, name = key
        want, have = wanted.get(key), got.get(key)
        verdict = OutputVerdict(
            role=role,
            name=name,
            status="identical",
            expected_sha256=want.sha256 if want else None,
            expected_size=want.size if want else None,
            actual_sha256=have["sha256"] if have else None,
            actual_size=have["size"] if have else None,
        )
        if want is None:
            verdict.status = "extra"
        elif have is None:
            verdict.status = "missing"
        elif want.sha256 != have["sha256"]:
            if role in timestamped_roles:
                verdict.status, verdict.note = "expected to differ", TIMESTAMPS_NOTE
            elif nondeterministic:
                verdict.status, verdict.note = "differs", NONDETERMINISTIC_NOTE
            else:
                verdict.status = "different"
        verdicts.append(verdict)
    return Verdict(outcome=_outcome(v.status for v in verdicts), summary=_summary(verdicts), outputs=verdicts)


def not_reproduced(state: str, error: str = "") -> Verdict:
    """The verdict of a rerun that did not COMPLETE."""
    why = f": {error.strip().splitlines()[0][:200]}" if error.strip() else ""
    return Verdict(outcome="not reproduced", summary=f"not reproduced: the rerun ended {state}{why}")


def _outcome(statuses: Iterable[str]) -> Outcome:
    seen = set(statuses)
    if seen & {"different", "missing", "extra"}:
        return "different"
    if seen & {"differs", "expected to differ"}:
        return "differs"
    return "identical"


def _describe(v: OutputVerdict) -> str:
    where = f"{v.role}/{v.name}"
    if v.status == "different":
        return f"{where} different ({v.expected_size} bytes expected, {v.actual_size} bytes now)"
    if v.status == "differs":
        return f"{where} differs ({v.note})"
    if v.status == "expected to differ":
        return f"{where} expected to differ: {v.note}"
    return f"{where} {v.status}"


def _summary(verdicts: list[OutputVerdict]) -> str:
    if not verdicts:
        return "identical: no outputs expected and none produced"
    outcome = _outcome(v.status for v in verdicts)
    if outcome == "identical":
        if len(verdicts) == 1:
            return "identical: the output has the expected sha256"
        return f"identical: all {len(verdicts)} outputs have the expected sha256"
    return f"{outcome}: " + "; ".join(_describe(v) for v in verdicts if v.status != "identical")


def aggregate_steps(steps: list[StepVerdict]) -> Verdict:
    """A workflow run's verdict: its steps', the worst one deciding the outcome."""
    if not steps:
        return Verdict(outcome="identical", summary="identical: no steps expected and none run")
    outcome: Outcome = max((s.outcome for s in steps), key=_RANK.__getitem__)
    if outcome == "identical":
        which = "the step reproduced its" if len(steps) == 1 else f"all {len(steps)} steps reproduced their"
        summary = f"identical: {which} outputs"
    else:
        summary = f"{outcome}: " + "; ".join(
            f"step {s.step}[{s.index}] {s.summary}" for s in steps if s.outcome != "identical"
        )
    return Verdict(outcome=outcome, summary=summary, steps=steps)


def step_key(step: str, index: int) -> str:
    """How `WorkflowRun.expected_steps` names a step: its name and index."""
    return f"{step}[{index}]"
