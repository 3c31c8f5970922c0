"""Submitting a calculation: validation, the cache (hit, follow, or run), the quota, the launch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from calculations.actions.followers import copy_outputs, shared_provenance
from calculations.actions.notifications import check_notify
from calculations.actions.quotas import active_limit
from calculations.actions.rows import first_row
from calculations.actions.transitions import lock_cache_key, record_event, user_actor
from calculations.actions.users import lock_user
from calculations.caching import compute_cache_key
from calculations.errors import InvalidInput, NotFound, QuotaExceeded
from calculations.formats import HEAD_BYTES, FormatMismatch, check_format, check_whole_file
from calculations.models import Calculation, CalculationInput, File, WorkflowRun
from calculations.orchestrator import launch_after_commit
from calculations.programs import get_program
from calculations.provenance import Provenance
from calculations.resources import RetryIn, escalation_plan, grant_resources
from calculations.run_kinds import CALCULATION
from calculations.states import ACTIVE_STATES, ATTEMPT_IN_PROGRESS_STATES, RunState
from calculations.storage import get_storage
from calculations.storage.base import read_head
from calculations.tools import UnknownTool, get_tool
from calculations.usage import recommended_grant

S = RunState


def _format_validation_error(prefix: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{prefix}{location}: {error['msg']}" if location else f"{prefix.rstrip('.')}: {error['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class NewCalculation:
    """A calculation to create, whatever its program runs (a tool's argv, a TES task's executors):
    its validated parameters (a TES task: the task itself) and its input files by role."""

    program: str
    version: str
    params: dict[str, Any]
    files: Mapping[str, File]
    backend: str
    use_cache: bool = True
    step: StepRef | None = None
    reason: str = "submitted"  # its first event's
    rerun: Rerun | None = None
    actor: str | None = None  # its first event's, when not its owner (an operator's dashboard launch)
    # a rerun that verifies: the outputs it should reproduce (`calculations.verdicts`), JSON
    expected_outputs: dict[str, Any] | None = None
    notify: dict[str, Any] | None = None  # checked by `check_notify`: {url, events}
    resources: dict[str, int] | None = None  # granted (`grant_resources`); None: the program sets them
    escalation: dict[str, dict[str, float]] | None = None  # the limits retried with more (`escalation_plan`)


@dataclass(frozen=True)
class Rerun:
    """A rerun of calculation `of` (an operator's, or its owner's that verifies): `actor` (who pressed
    it) is the new calculation's first event's actor."""

    of: UUID
    actor: str
    verify: bool = False


@dataclass(frozen=True)
class StepRef:
    """Where a calculation sits in a workflow run: executed by its flow run, never launched alone,
    and counted against the quota only while its attempt is in progress (`check_step_slot`)."""

    workflow_run_id: UUID
    name: str
    index: int


def check_create_calculation(
    owner_id: int,
    tool_name: str,
    *,
    inputs: Mapping[str, UUID],
    params: Mapping[str, Any],
    use_cache: bool = True,
    backend: str | None = None,
    step: StepRef | None = None,
    rerun: Rerun | None = None,
    actor: str | None = None,
    reason: str = "submitted",
    expected_outputs: dict[str, Any] | None = None,
    notify: Mapping[str, Any] | None = None,
    resources: Mapping[str, int | None] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> Calculation:
    """Validate a submission (tool, backend, parameters, input roles, files and their formats), then create it.
    `actor` and `reason` are its first event's, when someone other than its owner launched it;
    `expected_outputs`, what a verifying rerun should reproduce (its verdict compares them);
    `notify`, {url, events} to POST an event to when it reaches one of those states; `resources`, what
    the run asks for (`grant_resources`: within the tool's and the deployment's limits); `retry`, whether
    and how far an attempt killed for its memory or time is retried with more (`escalation_plan`)."""
    try:
        spec = get_tool(tool_name)
    except UnknownTool as exc:
        raise NotFound(str(exc)) from None
    try:
        chosen_backend = spec.choose_backend(backend)
    except ValueError as exc:
        raise InvalidInput(f"backend: {exc}") from None
    granted = grant_resources(spec.name, spec.resources, resources, backend=chosen_backend)
    try:
        validated = spec.params_model.model_validate(dict(params))
    except ValidationError as exc:
        raise InvalidInput(_format_validation_error("params.", exc)) from None

    expected = {role.name for role in spec.inputs}
    if unknown := sorted(set(inputs) - expected):
        raise InvalidInput(
            f"unknown input role(s) {', '.join(map(repr, unknown))} for tool {spec.name!r}; "
            f"it takes {', '.join(map(repr, sorted(expected)))}"
        )
    if missing := sorted(expected - set(inputs)):
        raise InvalidInput(f"missing input role(s) {', '.join(map(repr, missing))} for tool {spec.name!r}")

    storage = get_storage()
    files: dict[str, File] = {}
    for role in spec.inputs:
        file_id = inputs[role.name]
        file = first_row(File.objects.filter(id=file_id, owner_id=owner_id))
        if file is None:
            raise InvalidInput(f"input {role.name!r}: file {file_id} not found")
        head = read_head(storage, file.sha256, HEAD_BYTES)
        try:
            check_format(role.formats[0], head)
            check_whole_file(role.formats[0], partial(storage.iter_chunks, file.sha256))
        except FormatMismatch as exc:
            raise InvalidInput(f"input {role.name!r}: file {file.name!r} {exc}") from None
        files[role.name] = file
    if spec.check_inputs is not None:
        try:
            spec.check_inputs(validated, {role: file.name for role, file in files.items()})
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    checked_notify = check_notify(owner_id, notify["url"], notify.get("events"), CALCULATION) if notify else None
    input_bytes = sum(file.size for file in files.values())  # the request's band of measured runs
    granted = recommended_grant(spec, granted, resources, backend=chosen_backend, input_bytes=input_bytes)
    # (after the recommendation: a retry's cap is checked against what the run is given)
    escalation = escalation_plan(spec.resources, spec.escalation, granted, _checked_retry(retry))

    new = NewCalculation(
        program=spec.name,
        version=spec.version,
        params=validated.model_dump(mode="json"),
        files=files,
        backend=chosen_backend,
        use_cache=use_cache,
        step=step,
        rerun=rerun,
        actor=actor,
        reason=reason,
        expected_outputs=expected_outputs,
        notify=checked_notify,
        resources=granted,
        escalation=escalation,
    )
    return do_create_calculation(owner_id, new)


def _checked_retry(retry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`retry` as RetryIn reads it: a misspelled key or a wrong type is a 422 naming it, from the SDK
    and a workflow's steps as from the API (whose body schema checked it already)."""
    if retry is None:
        return None
    try:
        return RetryIn.model_validate(dict(retry)).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise InvalidInput(_format_validation_error("retry.", exc)) from None


def _has_all_outputs(calc: Calculation) -> bool:
    produced = sum(len(shas) for shas in calc.provenance.get("outputs", {}).values())
    return calc.output_files.count() == produced


@dataclass(frozen=True)
class ActiveUsage:
    """What counts against a user's active-calculations quota."""

    calculations: int  # outside workflow runs, queued or running
    runs: int  # workflow runs in flight
    steps: int  # steps whose attempt is in progress (INITIALIZING, RUNNING, CANCELING)
    idle_runs: int  # runs in flight with no step in progress: each holds one slot for its next step

    @property
    def total(self) -> int:
        return self.calculations + self.steps + self.idle_runs

    def describe(self, limit: int) -> str:
        held = f"{self.calculations} calculations"
        if self.runs:
            held += f" and {self.runs} workflow run{'s' * (self.runs != 1)}"
        if self.steps:
            held += f" ({self.steps} step{'s' * (self.steps != 1)} in flight)"
        return f"you have {held} queued or running; the limit is {limit}"


def active_usage(owner_id: int) -> ActiveUsage:
    """Only what runs counts: cache hits and followers cost nothing. A step counts while its attempt
    is in progress, not while it waits (for a slot, a retry's backoff, or an identical calculation);
    a workflow run counts as its steps in progress, and as one while it has none."""
    return _usage(owner_id, None)[0]


def _usage(owner_id: int, workflow_run_id: UUID | None) -> tuple[ActiveUsage, bool]:
    """The user's usage, and whether this run has a step in progress, on every submission and every
    step. Each read is narrow on the (owner, state, workflow_run) index: a map's steps waiting for a
    slot are QUEUED rows too, and reading them all on every step made a map's steps cost O(steps)."""
    mine = Calculation.objects.filter(owner_id=owner_id).order_by()  # (no ordering: it would pick the date index)
    calculations = mine.filter(state__in=ACTIVE_STATES, workflow_run__isnull=True, cached_from__isnull=True).count()
    step_runs = list(
        mine.filter(state__in=ATTEMPT_IN_PROGRESS_STATES, workflow_run__isnull=False).values_list(
            "workflow_run_id", flat=True
        )
    )
    active_runs = WorkflowRun.objects.filter(owner_id=owner_id, state__in=ACTIVE_STATES).order_by()
    runs = set(active_runs.values_list("id", flat=True))
    busy_runs = len(runs.intersection(step_runs))
    usage = ActiveUsage(calculations, len(runs), len(step_runs), len(runs) - busy_runs)
    return usage, workflow_run_id in step_runs


def check_active_quota(owner_id: int) -> None:
    """A submission (a calculation, a workflow run) is refused if the user's quota is used up."""
    lock_user(owner_id)
    limit, usage = active_limit(owner_id), active_usage(owner_id)
    if usage.total >= limit:
        raise QuotaExceeded(f"{usage.describe(limit)}: retry when some have finished")


def has_step_slot(owner_id: int, workflow_run_id: UUID) -> bool:
    """May a step of this run start its attempt now? Always if the run has no step in progress (the
    run already counts one), so a run never waits on itself; otherwise only while the quota has room."""
    usage, run_busy = _usage(owner_id, workflow_run_id)
    return not run_busy or usage.total < active_limit(owner_id)


def check_step_slot(owner_id: int, workflow_run_id: UUID) -> None:
    """`has_step_slot`, exactly (under the owner's lock: call it before locking the step's row); a
    step without one waits (QuotaExceeded)."""
    lock_user(owner_id)
    usage, run_busy = _usage(owner_id, workflow_run_id)
    limit = active_limit(owner_id)
    if run_busy and usage.total >= limit:
        raise QuotaExceeded(f"{usage.describe(limit)}: the step waits for one to finish")


@transaction.atomic
def do_create_calculation(owner_id: int, new: NewCalculation) -> Calculation:
    """Create the row: COMPLETE at once from the cache, following an identical one in flight, or
    QUEUED and launched once the transaction has committed (a step: executed by its workflow's flow)."""
    files, step = new.files, new.step
    use_cache = new.use_cache and get_program(new.program).cacheable
    input_sha256s = {role: file.sha256 for role, file in files.items()}
    cache_key = compute_cache_key(
        tool=new.program, tool_version=new.version, params=new.params, input_sha256s=input_sha256s
    )
    provenance = Provenance(
        tool=new.program,
        tool_version=new.version,
        params=new.params,
        inputs=input_sha256s,
        input_bytes=sum(file.size for file in files.values()),
        resources=new.resources or {},
        escalation=new.escalation or {},
    )
    calc = Calculation(
        owner_id=owner_id,
        tool=new.program,
        tool_version=new.version,
        params=new.params,
        cache_key=cache_key,
        use_cache=use_cache,
        backend=new.backend,
        provenance=provenance.model_dump(mode="json"),
        expected_outputs=new.expected_outputs,
        notify=new.notify,
    )
    if step is not None:
        calc.workflow_run_id, calc.step, calc.step_index = step.workflow_run_id, step.name, step.index
    actor, reason = new.actor or user_actor(owner_id), new.reason
    if new.rerun is not None:
        verifying = " to verify it" if new.rerun.verify else ""
        calc.rerun_of_id, actor = new.rerun.of, new.rerun.actor
        reason = f"rerun of calculation {new.rerun.of}{verifying}"

    hit = leader = None
    if use_cache:
        lock_cache_key(cache_key)
        same = Calculation.objects.filter(cache_key=cache_key).order_by("created_at")
        # a hit must still hold every output it produced: its owner may have deleted some
        hit = next((done for done in same.filter(state=S.COMPLETE)[:20] if _has_all_outputs(done)), None)
        if hit is None:
            leader = same.filter(state__in=ACTIVE_STATES, cached_from__isnull=True).first()

    if hit is not None:
        now = timezone.now()
        calc.state = S.COMPLETE
        original = hit.cached_from or hit  # the calculation that ran the tool
        calc.cached_from = original
        calc.provenance = shared_provenance(original, owner_id)
        calc.backend = hit.backend  # the backend that ran it
        calc.started_at = calc.finished_at = now
        calc.save()
        copy_outputs(hit, calc)
        record_event(calc, "", S.COMPLETE, actor, f"cache hit: identical to calculation {calc.cached_from_id}")
    elif leader is not None:
        calc.cached_from = leader
        calc.save()
        record_event(calc, "", S.QUEUED, actor, f"following identical calculation {leader.id} in flight")
    else:
        if step is None:
            check_active_quota(owner_id)
        calc.save()
        record_event(calc, "", S.QUEUED, actor, reason if step is None else f"step {step.name!r}")
        launch_after_commit(calc)

    # the files may have been deleted since they were checked: lock them, so none goes now
    chosen = {file.id for file in files.values()}
    if set(File.objects.select_for_update().filter(id__in=chosen).values_list("id", flat=True)) != chosen:
        raise InvalidInput("an input file was deleted while the calculation was being submitted")
    CalculationInput.objects.bulk_create(
        CalculationInput(calculation=calc, role=role, file=file) for role, file in files.items()
    )
    return calc
