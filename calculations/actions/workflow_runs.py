"""A workflow run's life (design brief §10): submitted, started by a worker as one flow run, its steps
created as calculations, ended as the policy table says (`calculations/policies.py`), resumed as a new
attempt after its worker was lost, or canceled with every step in flight.

Its state changes through the same guarded, fenced transition as a calculation's
(`transitions.apply_transition`, with its own table `states.WORKFLOW_RUN_TRANSITIONS`); it is canceled
through the same `cancels.request_cancel`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from pydantic_core import PydanticSerializationError, to_jsonable_python

from calculations.actions.access import access_workflow_run_by_id
from calculations.actions.cancels import cancel_steps
from calculations.actions.submissions import StepRef, check_active_quota, check_create_calculation
from calculations.actions.transitions import (
    WORKER_ACTOR,
    apply_transition,
    check_attempt,
    lock_run,
    record_event,
    user_actor,
)
from calculations.actions.users import do_ensure_user
from calculations.actions.verdicts import expected_step_of, record_workflow_run_verdict
from calculations.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from calculations.models import Calculation, WorkflowRun
from calculations.orchestrator import get_orchestrator, launch_after_commit
from calculations.policies import AttemptEnd, decide
from calculations.run_kinds import WORKFLOW_RUN
from calculations.states import RunState
from calculations.workflow_params import check_resume_input
from emgapiv2.config import get_settings

S = RunState
_NUL_IN_JSON = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash before u0000


def lock_workflow_run(workflow_run_id: UUID) -> WorkflowRun:
    return lock_run(WORKFLOW_RUN, workflow_run_id)


@transaction.atomic
def do_create_workflow_run(
    owner_id: int,
    workflow: str,
    params: Mapping[str, Any],
    *,
    rerun_of: UUID | None = None,
    expected_steps: dict[str, Any] | None = None,
    actor: str | None = None,
    reason: str | None = None,
    notify: dict[str, Any] | None = None,
) -> WorkflowRun:
    """QUEUED, counted once against the active quota, launched as a flow run once committed.
    (The caller has checked the parameters against the workflow's schema.) With `expected_steps`
    (`calculations.verdicts.ExpectedStep` by step key), a run that verifies: its steps never come
    from the cache, and once it ended it carries its verdict. `reason`: its first event's (a crate's
    import names the run it came from); `notify`, what `check_notify` made of the request's {url, events}."""
    check_active_quota(owner_id)
    run = WorkflowRun.objects.create(
        owner_id=owner_id,
        workflow=workflow,
        params=dict(params),
        rerun_of_id=rerun_of,
        expected_steps=expected_steps,
        notify=notify,
    )
    if reason is None:
        reason = "submitted" if rerun_of is None else f"rerun of workflow run {rerun_of} to verify it"
    record_event(run, "", S.QUEUED, actor or user_actor(owner_id), reason)
    launch_after_commit(run)
    return run


@transaction.atomic
def do_adopt_flow_run(
    owner_username: str, workflow: str, params: Mapping[str, Any], flow_run_id: UUID, *, launched_by: str | None = None
) -> WorkflowRun:
    """A workflow's flow run launched from the Prefect dashboard (not through the API) becomes a
    workflow run of the operator account (or of the owner of the files it names: `launched_by` is
    then the operator account), counted against its quota like any other. The caller has checked
    its parameters (`actions/dashboard.py`)."""
    owner = do_ensure_user(owner_username)
    existing = WorkflowRun.objects.filter(flow_run_id=flow_run_id).first()
    if existing is not None:
        return existing
    check_active_quota(owner.id)
    run = WorkflowRun.objects.create(owner=owner, workflow=workflow, params=dict(params), flow_run_id=flow_run_id)
    record_event(run, "", S.QUEUED, f"operator:{launched_by or owner_username}", "launched from the Prefect dashboard")
    return run


@transaction.atomic
def do_start_workflow_run(workflow_run_id: UUID, attempt: int, *, flow_run_id: UUID, worker: str) -> WorkflowRun:
    """A worker begins attempt `attempt` in flow run `flow_run_id` (InvalidTransition if it moved on)."""
    run = lock_workflow_run(workflow_run_id)
    reason = f"attempt {attempt} on {worker}" + (" (resumed: its COMPLETE steps are kept)" if attempt > 1 else "")
    return apply_transition(
        run,
        attempt,
        S.RUNNING,
        actor=WORKER_ACTOR,
        reason=reason,
        flow_run_id=flow_run_id,
        worker=worker,
        started_at=run.started_at or timezone.now(),
    )


@transaction.atomic
def do_pause_workflow_run(workflow_run_id: UUID, attempt: int, *, description: str) -> WorkflowRun:
    """The flow waits for an operator's input: PAUSED until the dashboard's form or the API resumes it."""
    run = lock_workflow_run(workflow_run_id)
    first_line = (description.strip().splitlines() or ["input"])[0][:300]
    return apply_transition(run, attempt, S.PAUSED, actor=WORKER_ACTOR, reason=f"waiting for input: {first_line}")


@transaction.atomic
def do_unpause_workflow_run(workflow_run_id: UUID, attempt: int) -> WorkflowRun:
    """The input came: RUNNING again (already, if it came through the API: `do_resume_workflow_run`)."""
    run = lock_workflow_run(workflow_run_id)
    if run.state == S.RUNNING and run.attempt == attempt:
        return run
    return apply_transition(run, attempt, S.RUNNING, actor=WORKER_ACTOR, reason="resumed with its input")


def _resumable(run: WorkflowRun) -> UUID:
    """The paused flow run a resume of `run` goes to (InvalidTransition, saying why, if there is none)."""
    if run.state == S.PAUSED and run.flow_run_id is not None:
        return run.flow_run_id
    last = run.events.order_by("-created_at", "-id").values_list("from_state", "to_state").first()
    if last == (S.PAUSED, S.RUNNING):
        raise InvalidTransition(f"workflow run {run.id} was already resumed: it is RUNNING")
    raise InvalidTransition(f"workflow run {run.id} is {run.state}: only a PAUSED run is resumed")


def check_resume_workflow_run(owner_id: int, workflow_run_id: UUID, run_input: dict[str, Any]) -> WorkflowRun:
    """Resume the owner's PAUSED run with `run_input`, once it is checked against the form the run
    paused with (422 naming the field) and names only the owner's files (404)."""
    run = access_workflow_run_by_id(owner_id, workflow_run_id)
    flow_run_id = _resumable(run)
    try:
        check_resume_input(owner_id, flow_run_id, run_input)
    except Conflict:
        # Prefect's flow run is no longer paused: most likely a concurrent resume won after this one
        # read the row. Its commit awaited under the row's lock, the run says so ("already resumed").
        with transaction.atomic():
            _resumable(lock_workflow_run(run.id))
        raise
    return do_resume_workflow_run(run.id, flow_run_id, run_input, actor=user_actor(owner_id))


@transaction.atomic
def do_resume_workflow_run(
    workflow_run_id: UUID, flow_run_id: UUID, run_input: dict[str, Any], *, actor: str
) -> WorkflowRun:
    """PAUSED -> RUNNING, and flow run `flow_run_id` (the one the input was checked for) resumed with it.

    Of concurrent resumes exactly one wins: the row moves under its lock before Prefect is asked, and
    Prefect is asked inside the transaction, so that a refusal there (the pause timed out, the input
    did not fit) rolls the move back and the run stays PAUSED for another try."""
    run = lock_workflow_run(workflow_run_id)
    if _resumable(run) != flow_run_id:
        raise InvalidTransition(f"workflow run {run.id} paused again meanwhile: give the input again")
    run = apply_transition(run, run.attempt, S.RUNNING, actor=actor, reason="resumed with its input")
    get_orchestrator().resume_run(flow_run_id, run_input)
    return run


@transaction.atomic
def do_cancel_steps(workflow_run_id: UUID, *, reason: str) -> int:
    """The flow stops early (a step failed): its steps still in flight are canceled."""
    return cancel_steps(lock_workflow_run(workflow_run_id), WORKER_ACTOR, reason)


def storable_result(value: Any) -> tuple[Any, str]:
    """What of a flow's return value a workflow run keeps: (its JSON, "") if it is JSON, as pydantic
    makes it (UUIDs, datetimes, models and dataclasses become strings and objects), and at most
    `workflow.max_result_bytes`; else (None, one line saying why it was not kept)."""
    if value is None:
        return None, ""
    limit = get_settings().workflow.max_result_bytes
    try:
        data = to_jsonable_python(value)
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        why = " ".join(str(exc).split())[:200]
        return None, f"its result was not kept: the flow returned a {type(value).__name__}, not JSON ({why})"
    if _NUL_IN_JSON.search(text):  # PostgreSQL's jsonb refuses it: the run's end would fail with it
        return None, "its result was not kept: it holds a NUL character (\\u0000), which the database refuses"
    size = len(text.encode())
    if size > limit:
        return None, (
            f"its result was not kept: {size} bytes of JSON, more than EMGAPI_WORKFLOW__MAX_RESULT_BYTES ({limit})"
        )
    return data, ""


@transaction.atomic
def do_end_workflow_run(
    workflow_run_id: UUID,
    attempt: int,
    end: AttemptEnd,
    *,
    message: str = "",
    actor: str = WORKER_ACTOR,
    result: Any = None,
) -> WorkflowRun:
    """Record how attempt `attempt` (one flow run) ended. The policy table decides: COMPLETE (with
    `result`, what the flow returned, kept if `storable_result` allows, else its error says why), a
    failure whose error is `message`, CANCELED if a cancel was requested, or resumed as attempt + 1 (a
    lost worker: at once, with no backoff; its COMPLETE steps are kept). Steps left in flight by an
    ending run are canceled: nothing runs for a workflow run that is over."""
    run = lock_workflow_run(workflow_run_id)
    check_attempt(run, attempt)
    decision = decide(
        end, current_state=S(run.state), attempt=attempt, max_attempts=get_settings().workflow.max_attempts
    )
    now = timezone.now()
    if decision.state == S.QUEUED:
        return _resume(run, attempt, message, actor)
    if decision.state == S.COMPLETE:
        kept, note = storable_result(result)
        reason = "every step completed" + (f"; {note}" if note else "")
        run = apply_transition(
            run, attempt, S.COMPLETE, actor=actor, reason=reason, finished_at=now, result=kept, error=note
        )
    elif decision.state == S.CANCELED:
        run = apply_transition(
            run, attempt, S.CANCELED, actor=actor, reason=message[:2000] or "canceled", finished_at=now
        )
    else:
        run = apply_transition(
            run, attempt, decision.state, actor=actor, reason=message[:2000], error=message, finished_at=now
        )
    cancel_steps(run, actor, f"workflow run {run.id} ended {run.state}")
    record_workflow_run_verdict(run)  # after its steps ended: their verdicts are its
    return run


def _resume(run: WorkflowRun, attempt: int, message: str, actor: str) -> WorkflowRun:
    reason = f"attempt {attempt} lost: {message[:1800]}; resuming as attempt {attempt + 1}"
    if run.state == S.QUEUED:  # its flow run never started: nothing to resume, a new one is created
        reason = f"attempt {attempt} never started: {message[:1800]}; launching attempt {attempt + 1}"
    run = apply_transition(
        run, attempt, S.QUEUED, actor=actor, reason=reason, attempt=attempt + 1, flow_run_id=None, worker=""
    )
    launch_after_commit(run)
    return run


@dataclass(frozen=True)
class NewStep:
    """A step a workflow's flow asks for: its name and index, its tool, inputs (file ids by role), and
    what `check_create_calculation` takes besides."""

    step: str
    index: int
    tool: str
    inputs: Mapping[str, UUID]
    params: Mapping[str, Any]
    backend: str | None = None
    use_cache: bool = True
    resources: Mapping[str, int | None] | None = None
    retry: Mapping[str, Any] | None = None


STEP_REFUSALS = (InvalidInput, NotFound, ValueError)  # what refuses one step of a batch, not the others


@transaction.atomic
def do_create_steps(workflow_run_id: UUID, attempt: int, steps: Sequence[NewStep]) -> list[Calculation | Exception]:
    """The calculation of each step of the workflow run, in order: the one an earlier attempt created
    (a resumed run finds its steps), or a new one, validated and created as any submission (the cache
    may answer it at once), owned by the run's owner; or what refused that step (`STEP_REFUSALS`, or
    InvalidTransition once the run is no longer RUNNING as attempt `attempt`: a canceled run starts no
    new step). One transaction for all of them: the run is locked and its existing steps are read once
    (a map's thousand steps are created a batch at a time, `workflows/execution/steps.py`)."""
    # (without its parameters: a map's list every batch would decode)
    run = lock_run(WORKFLOW_RUN, workflow_run_id, defer=("params", "result", "verdict"))
    names, indexes = {new.step for new in steps}, {new.index for new in steps}
    existing = {
        (calc.step, calc.step_index): calc
        for calc in Calculation.objects.filter(workflow_run=run, step__in=names, step_index__in=indexes).order_by()
    }
    stopped = run.state != S.RUNNING or run.attempt != attempt
    verifying = run.expected_steps is not None  # a rerun that verifies repeats every step
    created: list[Calculation | Exception] = []
    for new in steps:
        if (found := existing.get((new.step, new.index))) is not None:
            created.append(found)
            continue
        if stopped:
            message = f"workflow run {run.id} is {run.state} (attempt {run.attempt}): step {new.step!r} of attempt "
            created.append(InvalidTransition(f"{message}{attempt} not started"))
            continue
        try:
            with transaction.atomic():  # (a savepoint: a refused step leaves nothing behind)
                calc = check_create_calculation(
                    run.owner_id,
                    new.tool,
                    inputs=new.inputs,
                    params=new.params,
                    use_cache=new.use_cache and not verifying,
                    backend=new.backend,
                    step=StepRef(workflow_run_id=run.id, name=new.step, index=new.index),
                    expected_outputs=expected_step_of(run, new.step, new.index) if verifying else None,
                    resources=new.resources,
                    retry=new.retry,
                )
        except STEP_REFUSALS as exc:
            created.append(exc)
            continue
        existing[new.step, new.index] = calc  # (a batch that names a step twice gets it once)
        created.append(calc)
    return created


def do_create_step(workflow_run_id: UUID, attempt: int, **step: Any) -> Calculation:
    """`do_create_steps` for one step (`NewStep`'s fields): its calculation, or what refused it."""
    (calc,) = do_create_steps(workflow_run_id, attempt, [NewStep(**step)])
    if isinstance(calc, Exception):
        raise calc
    return calc
