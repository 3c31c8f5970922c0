"""User-defined pipelines: a DAG of registered tools, posted as data (design brief §10), never code.

```json
{"steps": {
   "genes": {"tool": "prodigal", "params": {"mode": "single"}, "inputs": {"contigs": "file:<id>"}},
   "hits":  {"tool": "hmmsearch", "inputs": {"profile": "file:<id>", "sequences": "genes.proteins"}}}}
```
An input is `"file:<id>"`, `"<step>.<output role>"`, or `{"each": [...]}` of those: the step is then
mapped over the list (one calculation per element), and a step that takes a mapped step's output is
mapped along with it (element i takes element i's output). `check_pipeline` finds every mistake a
submission can hold before anything runs; `plan` is what the built-in `pipeline` flow executes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calculations.errors import InvalidInput
from calculations.models import File
from calculations.names import IDENTIFIER, IDENTIFIER_RULE, is_identifier
from calculations.resources import ResourcesIn, RetryIn, escalation_plan, grant_resources
from calculations.tools import UnknownTool, get_tool

MAX_CALCULATIONS = 10_000  # in one pipeline, all its maps together
FILE_REF = re.compile(r"file:([0-9a-fA-F-]{32,36})")
OUTPUT_REF = re.compile(rf"({IDENTIFIER.pattern})\.({IDENTIFIER.pattern})", re.ASCII)  # step and role: identifiers


class Each(BaseModel):
    """Map the step over these references: one calculation per element."""

    model_config = ConfigDict(extra="forbid")
    each: list[str] = Field(min_length=1, max_length=MAX_CALCULATIONS)


class PipelineStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(description="A registered tool (GET /api/v2/tools).")
    params: dict[str, Any] = Field(default_factory=dict, description="The tool's parameters.")
    inputs: dict[str, str | Each] = Field(
        description="For each input role: 'file:<id>', '<step>.<output role>', or {'each': [...]} of those."
    )
    backend: str | None = Field(None, description="local, container or slurm; unset: the tool's default.")
    use_cache: bool = Field(True, description="Answer from an identical earlier calculation if there is one.")
    resources: ResourcesIn | None = Field(None, description="CPUs, memory, time and GPUs to give each call.")
    retry: RetryIn | None = Field(None, description="Whether to retry a call with more memory or time, and up to what.")


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: dict[str, PipelineStep] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class Ref:
    """One reference: a file (file_id), or a step's output (step, role)."""

    file_id: UUID | None = None
    step: str = ""
    role: str = ""


@dataclass(frozen=True)
class PlannedStep:
    name: str
    tool: str
    params: dict[str, Any]
    backend: str | None
    use_cache: bool
    resources: dict[str, int | None] | None  # as asked (each call's submission grants them)
    retry: dict[str, Any] | None  # as asked
    width: int | None  # elements, if mapped
    inputs: dict[str, list[Ref]]  # per role: one ref, or one per element (an `each`)
    each_roles: frozenset[str]

    def refs_for(self, index: int) -> dict[str, Ref]:
        """Element `index`'s inputs (a step's output named here is that step's element `index` if it
        is mapped: the caller resolves it)."""
        return {role: refs[index] if role in self.each_roles else refs[0] for role, refs in self.inputs.items()}


def _parse_ref(where: str, text: str) -> Ref:
    if match := FILE_REF.fullmatch(text):
        try:
            return Ref(file_id=UUID(match.group(1)))
        except ValueError:
            pass
    elif match := OUTPUT_REF.fullmatch(text):
        return Ref(step=match.group(1), role=match.group(2))
    raise InvalidInput(f"{where}: {text[:100]!r} is neither 'file:<id>' nor '<step>.<output role>'")


def _order(steps: dict[str, dict[str, list[Ref]]]) -> list[str]:
    """The steps in an order where each comes after the steps it takes outputs from (Kahn's
    algorithm: linear time, and no recursion however long a chain is); a cycle is a 422 naming it."""
    upstream = {
        name: list(dict.fromkeys(ref.step for refs in inputs.values() for ref in refs if ref.step))
        for name, inputs in steps.items()
    }
    downstream: dict[str, list[str]] = {name: [] for name in steps}
    waiting = {name: len(names) for name, names in upstream.items()}
    for name, names in upstream.items():
        for before in names:
            downstream[before].append(name)
    ready = deque(name for name in steps if not waiting[name])
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for after in downstream[name]:
            waiting[after] -= 1
            if not waiting[after]:
                ready.append(after)
    if len(order) < len(steps):
        raise InvalidInput(f"steps: a cycle: {' → '.join(_a_cycle(upstream, {n for n, w in waiting.items() if w}))}")
    return order


def _a_cycle(upstream: dict[str, list[str]], left: set[str]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not order: each of them waits on another."""
    name = next(name for name in upstream if name in left)
    path: list[str] = []
    at: dict[str, int] = {}
    while name not in at:
        at[name] = len(path)
        path.append(name)
        name = next(before for before in upstream[name] if before in left)
    return [*path[at[name] :], name]


def plan(raw: Any) -> list[PlannedStep]:
    """The pipeline's steps in dependency order, each with its map width; raises InvalidInput naming
    the step and field of the first mistake (ownership of files aside: `check_pipeline`)."""
    try:
        pipeline = Pipeline.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"{location}: {first['msg']}" if location else first["msg"]) from None
    refs: dict[str, dict[str, list[Ref]]] = {}
    mapped_roles: dict[str, set[str]] = {}
    for name, step in pipeline.steps.items():
        if not is_identifier(name):
            raise InvalidInput(f"steps.{name[:64]}: a step name is {IDENTIFIER_RULE}")
        refs[name], mapped_roles[name] = {}, set()
        for role, value in step.inputs.items():
            where = f"steps.{name}.inputs.{role}"
            if isinstance(value, Each):
                refs[name][role] = [_parse_ref(f"{where}.each[{i}]", text) for i, text in enumerate(value.each)]
                mapped_roles[name].add(role)
            else:
                refs[name][role] = [_parse_ref(where, value)]
    for name, step in pipeline.steps.items():
        _check_step(name, step, refs, pipeline)
    order = _order(refs)
    widths: dict[str, int | None] = {}
    total = 0
    for name in order:
        width = _width(name, refs[name], mapped_roles[name], widths)
        widths[name] = width
        total += width or 1
        if total > MAX_CALCULATIONS:
            raise InvalidInput(f"steps: more than {MAX_CALCULATIONS} calculations in one pipeline")
    return [
        PlannedStep(
            name=name,
            tool=pipeline.steps[name].tool,
            params=pipeline.steps[name].params,
            backend=pipeline.steps[name].backend,
            use_cache=pipeline.steps[name].use_cache,
            resources=_asked(pipeline.steps[name].resources),
            retry=_asked(pipeline.steps[name].retry),
            width=widths[name],
            inputs=refs[name],
            each_roles=frozenset(mapped_roles[name]),
        )
        for name in order
    ]


def _asked(asked: BaseModel | None) -> dict[str, Any] | None:
    return asked.model_dump(exclude_none=True) if asked is not None else None


def _check_step(name: str, step: PipelineStep, refs: dict[str, dict[str, list[Ref]]], pipeline: Pipeline) -> None:
    try:
        spec = get_tool(step.tool)
    except UnknownTool as exc:
        raise InvalidInput(f"steps.{name}.tool: {exc}") from None
    try:
        backend = spec.choose_backend(step.backend)
    except ValueError as exc:
        raise InvalidInput(f"steps.{name}.backend: {exc}") from None
    try:
        granted = grant_resources(spec.name, spec.resources, _asked(step.resources), backend=backend)
        escalation_plan(spec.resources, spec.escalation, granted, _asked(step.retry))
    except InvalidInput as exc:
        raise InvalidInput(f"steps.{name}.{exc}") from None
    try:
        spec.params_model.model_validate(step.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"steps.{name}.params.{location}: {first['msg']}" if location else first["msg"]) from None
    expected = {role.name for role in spec.inputs}
    if unknown := sorted(set(step.inputs) - expected):
        raise InvalidInput(
            f"steps.{name}.inputs.{unknown[0]}: {spec.name} has no input {unknown[0]!r}; "
            f"it takes {', '.join(map(repr, sorted(expected)))}"
        )
    if missing := sorted(expected - set(step.inputs)):
        raise InvalidInput(f"steps.{name}.inputs.{missing[0]}: missing ({spec.name} needs it)")
    for role, role_refs in refs[name].items():
        for ref in role_refs:
            if not ref.step:
                continue
            where = f"steps.{name}.inputs.{role}"
            if ref.step not in pipeline.steps:
                raise InvalidInput(f"{where}: unknown step {ref.step!r}")
            upstream = get_tool(pipeline.steps[ref.step].tool)
            outputs = {output.name for output in upstream.outputs}
            if ref.role not in outputs:
                raise InvalidInput(
                    f"{where}: step {ref.step!r} ({upstream.name}) has no output {ref.role!r}; "
                    f"it has {', '.join(map(repr, sorted(outputs)))}"
                )


def _width(name: str, inputs: dict[str, list[Ref]], mapped: set[str], widths: dict[str, int | None]) -> int | None:
    """How many elements a step is mapped over (None: not mapped). Mapped inputs are zipped: their
    lengths must agree."""
    found: dict[str, int] = {}
    for role, refs in inputs.items():
        if role in mapped:
            found[f"inputs.{role}"] = len(refs)
            continue
        upstream = refs[0].step
        if upstream and widths.get(upstream):
            found[f"inputs.{role} (from mapped step {upstream!r})"] = widths[upstream] or 0
    for role in mapped:  # a mapped input naming a mapped step's output would be a map of maps
        for ref in inputs[role]:
            if ref.step and widths.get(ref.step):
                raise InvalidInput(
                    f"steps.{name}.inputs.{role}: 'each' over the output of mapped step {ref.step!r}; "
                    f"name it as '{ref.step}.{ref.role}' to map along with it"
                )
    if len(set(found.values())) > 1:
        described = ", ".join(f"{where}: {length}" for where, length in found.items())
        raise InvalidInput(f"steps.{name}: mapped inputs of different lengths ({described}); they are zipped")
    return next(iter(found.values()), None)


def file_refs(steps: list[PlannedStep]) -> Iterator[tuple[str, UUID]]:
    for step in steps:
        for role, refs in step.inputs.items():
            for ref in refs:
                if ref.file_id is not None:
                    yield f"steps.{step.name}.inputs.{role}", ref.file_id


def check_pipeline(owner_id: int, raw: Any) -> list[PlannedStep]:
    """`plan`, and every file it names must be the owner's (else a 422 naming the step and role)."""
    steps = plan(raw)
    named = dict((file_id, where) for where, file_id in file_refs(steps))
    owned = set(File.objects.filter(owner_id=owner_id, id__in=list(named)).values_list("id", flat=True))
    for file_id, where in named.items():
        if file_id not in owned:
            raise InvalidInput(f"{where}: file {file_id} not found")
    return steps
