"""A run done again, as a new run of the same owner linked to the old (`rerun_of`, its first event, and
an event on the old one naming the new one). One path, two callers:

- an operator's rerun (the admin) of a failed or canceled calculation, whatever its program: the
  request it was accepted from is checked again, as if it had just been submitted;
- a user's rerun that verifies (issue 20) of their own ended calculation or workflow run: the same
  tool version and image digest (refused with a 409 saying which, when either is gone), the same
  inputs (a 409 naming those deleted since) and parameters, never from the cache. It carries what
  it should reproduce (`expected_outputs`, `expected_steps`), and once it ended, its verdict
  (`actions/verdicts.py`).

`check_verify_calculation` is the entry for any expectation, a local calculation's or a crate's.
The cache is never asked: a rerun is wanted because the earlier one failed, or to see it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.db import transaction

from calculations.actions.access import access_calculation_by_id, access_workflow_run_by_id
from calculations.actions.submissions import Rerun, check_create_calculation
from calculations.actions.tes import check_create_tes_task
from calculations.actions.transitions import record_event, user_actor
from calculations.actions.workflow_runs import do_create_workflow_run
from calculations.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from calculations.images import current_image_id
from calculations.models import Calculation, WorkflowRun
from calculations.programs import TES_RUNNER, TOOL_RUNNER, get_program
from calculations.provenance import Provenance
from calculations.states import RunState
from calculations.tes.schemas import TaskIn
from calculations.tools import UnknownTool, get_tool
from calculations.verdicts import ExpectedStep, expected_outputs, step_key
from calculations.workflow_params import check_workflow_params, find_workflow
from emgapiv2.config import get_settings

S = RunState
RERUNNABLE = frozenset({S.EXECUTOR_ERROR, S.SYSTEM_ERROR, S.CANCELED})  # by an operator
ENDED = RERUNNABLE | {S.COMPLETE}  # by its owner, to verify
_FILE_FIELDS = ("output_role", "name", "sha256", "size")


def check_tool_available(tool: str, version: str, *, image: str | None, image_digest: str | None) -> None:
    """Conflict, saying which, unless this deployment still has the tool at `version` and, if it ran
    in a container, an image of that digest under the tool's image name."""
    try:
        spec = get_tool(tool)
    except UnknownTool:
        raise Conflict(f"{tool} {version} is not registered here (no tool {tool!r})") from None
    if spec.version != version:
        raise Conflict(f"{tool} {version} is not registered here (have {spec.version})")
    if not image_digest:
        return  # it ran an executable, not an image: its version is all there is to match
    ran = f"image {image or tool}@{image_digest}"
    if spec.image is None:
        raise Conflict(f"{ran} is not available (the tool has no image here now)")
    now = current_image_id(spec.image.name)
    if now is None:
        raise Conflict(f"{ran} is not available (the container engine holds no {spec.image.name})")
    if now != image_digest:
        raise Conflict(f"{ran} is not available (the tool's image is now {now})")


def check_verify_calculation(
    owner_id: int,
    tool: str,
    *,
    tool_version: str,
    image: str | None,
    image_digest: str | None,
    inputs: Mapping[str, UUID],
    params: Mapping[str, Any],
    expected: dict[str, Any] | None,
    backend: str | None = None,
    rerun: Rerun | None = None,
    reason: str = "submitted",
    resources: Mapping[str, int] | None = None,
) -> Calculation:
    """A calculation that runs `tool` at `tool_version` (and `image_digest`, if it had one) again, from
    no cache, and once it ended carries its verdict against `expected` ({role: [{name, sha256, size}]};
    None: nothing to compare). Conflict if the version or image is gone; else as any submission.
    `reason`: its first event's (where the expectation came from, for a crate's)."""
    check_tool_available(tool, tool_version, image=image, image_digest=image_digest)
    return check_create_calculation(
        owner_id,
        tool,
        inputs=inputs,
        params=params,
        use_cache=False,
        backend=backend,
        rerun=rerun,
        reason=reason,
        expected_outputs=expected,
        resources=resources,
    )


def _deleted_inputs(calc: Calculation) -> list[tuple[str, str]]:
    """(role, sha256) of each input its owner deleted since (provenance keeps the sha256)."""
    shas = calc.provenance.get("inputs", {})
    return [
        (role, shas.get(role, ""))
        for role, file_id in sorted(calc.inputs.values_list("role", "file_id"))
        if not file_id
    ]


def _named(role: str, sha256: str) -> str:
    return f"{role!r} (sha256 {sha256[:12]}…)"


def _rerun_tool(calc: Calculation, rerun: Rerun) -> Calculation:
    if deleted := _deleted_inputs(calc):
        names = ", ".join(_named(*entry) for entry in deleted)
        raise Conflict(f"input {names} of calculation {calc.id} was deleted since: upload it again to rerun")
    inputs: dict[str, UUID] = dict(calc.inputs.values_list("role", "file_id"))
    backend = calc.backend or None
    resources = calc.provenance.get("resources") or None  # given as it was
    if not rerun.verify:
        return check_create_calculation(
            calc.owner_id,
            calc.tool,
            inputs=inputs,
            params=calc.params,
            use_cache=False,
            backend=backend,
            rerun=rerun,
            resources=resources,
        )
    provenance = Provenance.model_validate(calc.provenance)
    completed = calc.state == S.COMPLETE  # a failed one produced nothing to compare with
    try:
        return check_verify_calculation(
            calc.owner_id,
            calc.tool,
            tool_version=calc.tool_version,
            image=provenance.image,
            image_digest=provenance.image_digest,
            inputs=inputs,
            params=calc.params,
            expected=expected_outputs(calc.output_files.values(*_FILE_FIELDS)) if completed else None,
            backend=backend,
            rerun=rerun,
            resources=resources,
        )
    except InvalidInput as exc:  # its backend or parameters were accepted then: what changed is here, not the request
        raise Conflict(f"calculation {calc.id} cannot be run again as it ran: {exc}") from None


def _rerun_tes_task(calc: Calculation, rerun: Rerun) -> Calculation:
    """The task as accepted, checked again (its images, its files)."""
    if rerun.verify:
        raise Conflict(f"{calc.id} is a TES task: only a tool's calculation is rerun to verify")
    hosts = {urlsplit(get_settings().public_url).netloc}
    return check_create_tes_task(calc.owner_id, TaskIn.model_validate(calc.params), hosts=hosts, rerun=rerun)


_RESUBMIT: dict[str, Callable[[Calculation, Rerun], Calculation]] = {
    TOOL_RUNNER: _rerun_tool,
    TES_RUNNER: _rerun_tes_task,
}


def _rerun(calc: Calculation, rerun: Rerun) -> Calculation:
    new = _RESUBMIT[get_program(calc.tool).runner](calc, rerun)
    what = "rerun to verify it" if rerun.verify else "rerun"
    record_event(calc, calc.state, calc.state, rerun.actor, f"{what} as calculation {new.id}")
    return new


@transaction.atomic
def check_rerun_calculation(calculation_id: UUID, *, actor: str) -> Calculation:
    """An operator's rerun: the new calculation, created by `actor` (a staff member); InvalidTransition
    if this one has not failed, or the check's own error."""
    # not locked: an ended calculation's state no longer changes, and its owner's lock comes first
    calc = Calculation.objects.get(id=calculation_id)
    if calc.state not in RERUNNABLE:
        raise InvalidTransition(f"{calc.id} is {calc.state}: only a failed or canceled one is rerun")
    return _rerun(calc, Rerun(calc.id, actor))


@transaction.atomic
def check_verify_rerun(owner_id: int, calculation_id: UUID) -> Calculation:
    """The owner's ended calculation run again to verify it (404 if it is not theirs, 409 while it
    runs, or if its tool version, its image or an input is gone)."""
    calc = access_calculation_by_id(owner_id, calculation_id)
    if calc.state not in ENDED:
        raise InvalidTransition(f"calculation {calc.id} is {calc.state}: it is rerun once it ended")
    return _rerun(calc, Rerun(calc.id, user_actor(owner_id), verify=True))


def _expected_steps(steps: list[Calculation]) -> dict[str, Any]:
    """{"step[index]": {step, index, tool, outputs}} of the COMPLETE steps, as a verifying run keeps it."""
    expected: dict[str, Any] = {}
    for calc in steps:
        if calc.state != S.COMPLETE:
            continue
        index = calc.step_index or 0
        outputs = expected_outputs(calc.output_files.values(*_FILE_FIELDS))
        step = ExpectedStep.model_validate({"step": calc.step, "index": index, "tool": calc.tool, "outputs": outputs})
        expected[step_key(calc.step, index)] = step.model_dump(mode="json")
    return expected


@transaction.atomic
def check_verify_workflow_run_rerun(owner_id: int, workflow_run_id: UUID) -> WorkflowRun:
    """The owner's ended COMPLETE workflow run run again to verify it, step by step: each step's tool
    version and image checked as a calculation's are, inputs from outside the run still held, the
    workflow still deployed and its parameters still valid (else a 409 saying which)."""
    run = access_workflow_run_by_id(owner_id, workflow_run_id)
    if run.state != S.COMPLETE:
        detail = "it is rerun once it ended" if run.state not in ENDED else "only a COMPLETE run is rerun to verify"
        raise InvalidTransition(f"workflow run {run.id} is {run.state}: {detail}")
    steps = list(run.steps.order_by("step", "step_index"))
    produced = {sha for calc in steps for shas in calc.provenance.get("outputs", {}).values() for sha in shas}
    deleted: list[str] = []
    for calc in steps:
        provenance = Provenance.model_validate(calc.provenance)
        check_tool_available(calc.tool, calc.tool_version, image=provenance.image, image_digest=provenance.image_digest)
        deleted += [
            f"{_named(role, sha256)} of step {step_key(calc.step, calc.step_index or 0)}"
            for role, sha256 in _deleted_inputs(calc)
            if sha256 not in produced  # an earlier step's output: the rerun makes it again
        ]
    if deleted:
        raise Conflict(f"input {', '.join(deleted)} was deleted since: upload it again to rerun")
    try:
        check_workflow_params(owner_id, find_workflow(run.workflow), run.params)
    except NotFound as exc:
        raise Conflict(f"workflow run {run.id} cannot be run again here: {exc}") from None
    except InvalidInput as exc:
        raise Conflict(f"workflow run {run.id}'s parameters no longer hold: {exc}") from None
    actor = user_actor(owner_id)
    new = do_create_workflow_run(
        owner_id, run.workflow, run.params, rerun_of=run.id, expected_steps=_expected_steps(steps), actor=actor
    )
    record_event(run, run.state, run.state, actor, f"rerun to verify it as workflow run {new.id}")
    return new
