"""A workflow run's life (design brief §10): submitted, started by a worker as one flow run, its steps
created as calculations, ended as the policy table says (`calculations/policies.py`), resumed as a new
attempt after its worker was lost, or canceled with every step in flight.

Every change is a guarded, fenced UPDATE on the workflow run's row (its own transition table,
`states.WORKFLOW_TRANSITIONS`) plus a WorkflowRunEvent row, as for calculations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from calculations.actions.access import access_workflow_run_by_id
from calculations.actions.cancels import do_request_cancel
from calculations.actions.submissions import StepRef, check_active_quota, check_create_calculation
from calculations.actions.transitions import WORKER_ACTOR, user_actor
from calculations.errors import InvalidTransition, NotFound
from calculations.launching import get_launcher, launch_workflow_run_after_commit, stop_run_after_commit
from calculations.models import Calculation, WorkflowRun, WorkflowRunEvent
from calculations.policies import AttemptEnd, decide
from calculations.states import ACTIVE_STATES, WORKFLOW_TRANSITIONS, CalculationState, sources_of
from calculations.workflow_params import check_resume_input
from emgapiv2.config import get_settings

S = CalculationState


def lock_workflow_run(workflow_run_id: UUID) -> WorkflowRun:
    run = WorkflowRun.objects.select_for_update(no_key=True).filter(id=workflow_run_id).first()
    if run is None:
        raise NotFound(f"workflow run {workflow_run_id} not found")
    return run


def _transition(
    run: WorkflowRun, attempt: int, target: CalculationState, /, *, actor: str, reason: str = "", **fields: Any
) -> WorkflowRun:
    """Move attempt `attempt` of the locked `run` to `target` if the table allows it; log it."""
    now = timezone.now()
    sources = sources_of(target, WORKFLOW_TRANSITIONS)
    updated = WorkflowRun.objects.filter(id=run.id, attempt=attempt, state__in=sources).update(
        state=target, updated_at=now, **fields
    )
    if not updated:
        raise InvalidTransition(
            f"workflow run {run.id} is {run.state} (attempt {run.attempt}); attempt {attempt} cannot move to {target}"
        )
    from_state = run.state
    for name, value in {**fields, "state": target, "updated_at": now}.items():
        setattr(run, name, value)
    WorkflowRunEvent.objects.create(
        workflow_run=run, attempt=run.attempt, from_state=from_state, to_state=target, actor=actor, reason=reason
    )
    return run


@transaction.atomic
def do_create_workflow_run(owner_id: int, workflow: str, params: Mapping[str, Any]) -> WorkflowRun:
    """QUEUED, counted once against the active quota, launched as a flow run once committed.
    (The caller has checked the parameters against the workflow's schema.)"""
    check_active_quota(owner_id)
    run = WorkflowRun.objects.create(owner_id=owner_id, workflow=workflow, params=dict(params))
    WorkflowRunEvent.objects.create(
        workflow_run=run, attempt=1, from_state="", to_state=S.QUEUED, actor=user_actor(owner_id), reason="submitted"
    )
    launch_workflow_run_after_commit(run.id)
    return run


@transaction.atomic
def do_adopt_flow_run(owner_username: str, workflow: str, params: Mapping[str, Any], flow_run_id: UUID) -> WorkflowRun:
    """A workflow's flow run launched from the Prefect dashboard (not through the API) becomes a
    workflow run of the operator account, counted against its quota like any other."""
    owner, _ = get_user_model().objects.get_or_create(username=owner_username)
    existing = WorkflowRun.objects.filter(flow_run_id=flow_run_id).first()
    if existing is not None:
        return existing
    check_active_quota(owner.id)
    run = WorkflowRun.objects.create(owner=owner, workflow=workflow, params=dict(params), flow_run_id=flow_run_id)
    WorkflowRunEvent.objects.create(
        workflow_run=run, attempt=1, from_state="", to_state=S.QUEUED, actor=f"operator:{owner_username}",
        reason="launched from the Prefect dashboard",
    )  # fmt: skip
    return run


@transaction.atomic
def do_record_workflow_flow_run(workflow_run_id: UUID, attempt: int, flow_run_id: UUID) -> bool:
    """Remember which flow run serves this attempt; False if the attempt moved on."""
    return bool(
        WorkflowRun.objects.filter(id=workflow_run_id, attempt=attempt, flow_run_id__isnull=True).update(
            flow_run_id=flow_run_id
        )
    )


@transaction.atomic
def do_start_workflow_run(workflow_run_id: UUID, attempt: int, *, flow_run_id: UUID, worker: str) -> WorkflowRun:
    """A worker begins attempt `attempt` in flow run `flow_run_id` (InvalidTransition if it moved on)."""
    run = lock_workflow_run(workflow_run_id)
    reason = f"attempt {attempt} on {worker}" + (" (resumed: its COMPLETE steps are kept)" if attempt > 1 else "")
    return _transition(
        run,
        attempt,
        S.RUNNING,
        actor=WORKER_ACTOR,
        reason=reason,
        flow_run_id=flow_run_id,
        worker=worker,
        started_at=run.started_at or timezone.now(),
    )


def _cancel_steps(run: WorkflowRun, actor: str, why: str) -> int:
    """Ask every step of `run` still in flight to stop (their tools, containers, Slurm jobs go)."""
    active = Calculation.objects.filter(workflow_run=run, state__in=ACTIVE_STATES).exclude(state=S.CANCELING)
    ids = list(active.values_list("id", flat=True))
    for calculation_id in ids:
        try:
            do_request_cancel(calculation_id, actor=f"{actor} ({why})")
        except InvalidTransition:
            pass  # it ended meanwhile
    return len(ids)


@transaction.atomic
def do_pause_workflow_run(workflow_run_id: UUID, attempt: int, *, description: str) -> WorkflowRun:
    """The flow waits for an operator's input: PAUSED until the dashboard's form or the API resumes it."""
    run = lock_workflow_run(workflow_run_id)
    first_line = (description.strip().splitlines() or ["input"])[0][:300]
    return _transition(run, attempt, S.PAUSED, actor=WORKER_ACTOR, reason=f"waiting for input: {first_line}")


@transaction.atomic
def do_unpause_workflow_run(workflow_run_id: UUID, attempt: int) -> WorkflowRun:
    """The input came: RUNNING again (already, if it came through the API: `do_resume_workflow_run`)."""
    run = lock_workflow_run(workflow_run_id)
    if run.state == S.RUNNING and run.attempt == attempt:
        return run
    return _transition(run, attempt, S.RUNNING, actor=WORKER_ACTOR, reason="resumed with its input")


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
    check_resume_input(owner_id, flow_run_id, run_input)
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
    run = _transition(run, run.attempt, S.RUNNING, actor=actor, reason="resumed with its input")
    get_launcher().resume_run(flow_run_id, run_input)
    return run


@transaction.atomic
def do_cancel_steps(workflow_run_id: UUID, *, reason: str) -> int:
    """The flow stops early (a step failed): its steps still in flight are canceled."""
    return _cancel_steps(lock_workflow_run(workflow_run_id), WORKER_ACTOR, reason)


@transaction.atomic
def do_request_cancel_workflow_run(workflow_run_id: UUID, *, actor: str) -> WorkflowRun:
    """Stop a workflow run: one not yet started is CANCELED at once; a running one is CANCELING, every
    step in flight is canceled, no new step starts, and it is CANCELED once its flow has returned."""
    run = lock_workflow_run(workflow_run_id)
    if run.state == S.CANCELING:
        return run
    if run.state not in ACTIVE_STATES:
        raise InvalidTransition(f"workflow run {run.id} is already {run.state}")
    was_queued = run.state == S.QUEUED
    run = _transition(run, run.attempt, S.CANCELING, actor=actor, reason="cancel requested")
    _cancel_steps(run, actor, f"workflow run {run.id} canceled")
    if was_queued:
        run = _transition(
            run, run.attempt, S.CANCELED, actor=actor, reason="canceled before it started", finished_at=timezone.now()
        )
    if run.flow_run_id is not None:
        stop_run_after_commit(run.flow_run_id)
    return run


@transaction.atomic
def do_end_workflow_run(
    workflow_run_id: UUID, attempt: int, end: AttemptEnd, *, message: str = "", actor: str = WORKER_ACTOR
) -> WorkflowRun:
    """Record how attempt `attempt` (one flow run) ended. The policy table decides: COMPLETE, a failure
    whose error is `message`, CANCELED if a cancel was requested, or resumed as attempt + 1 (a lost
    worker: at once, with no backoff; its COMPLETE steps are kept). Steps left in flight by an ending
    run are canceled: nothing runs for a workflow run that is over."""
    run = lock_workflow_run(workflow_run_id)
    if run.attempt != attempt:
        raise InvalidTransition(
            f"workflow run {run.id} is on attempt {run.attempt} ({run.state}); attempt {attempt} ended too late"
        )
    decision = decide(
        end, current_state=S(run.state), attempt=attempt, max_attempts=get_settings().workflow.max_attempts
    )
    now = timezone.now()
    if decision.state == S.QUEUED:
        return _resume(run, attempt, message, actor)
    if decision.state == S.COMPLETE:
        run = _transition(run, attempt, S.COMPLETE, actor=actor, reason="every step completed", finished_at=now)
    elif decision.state == S.CANCELED:
        run = _transition(run, attempt, S.CANCELED, actor=actor, reason=message[:2000] or "canceled", finished_at=now)
    else:
        run = _transition(
            run, attempt, decision.state, actor=actor, reason=message[:2000], error=message, finished_at=now
        )
    _cancel_steps(run, actor, f"workflow run {run.id} ended {run.state}")
    return run


def _resume(run: WorkflowRun, attempt: int, message: str, actor: str) -> WorkflowRun:
    reason = f"attempt {attempt} lost: {message[:1800]}; resuming as attempt {attempt + 1}"
    if run.state == S.QUEUED:  # its flow run never started: nothing to resume, a new one is created
        reason = f"attempt {attempt} never started: {message[:1800]}; launching attempt {attempt + 1}"
    run = _transition(
        run, attempt, S.QUEUED, actor=actor, reason=reason, attempt=attempt + 1, flow_run_id=None, worker=""
    )
    launch_workflow_run_after_commit(run.id)
    return run


@transaction.atomic
def do_create_step(
    workflow_run_id: UUID,
    attempt: int,
    *,
    step: str,
    index: int,
    tool: str,
    inputs: Mapping[str, UUID],
    params: Mapping[str, Any],
    backend: str | None = None,
    use_cache: bool = True,
) -> Calculation:
    """The calculation of step (`step`, `index`) of the workflow run: the one an earlier attempt
    created (a resumed run finds its steps), or a new one, validated and created as any submission
    (the cache may answer it at once), owned by the workflow run's owner. Refused (InvalidTransition)
    once the run is no longer RUNNING as attempt `attempt`: a canceled run starts no new step."""
    run = lock_workflow_run(workflow_run_id)
    existing = Calculation.objects.filter(workflow_run=run, step=step, step_index=index).first()
    if existing is not None:
        return existing
    if run.state != S.RUNNING or run.attempt != attempt:
        raise InvalidTransition(
            f"workflow run {run.id} is {run.state} (attempt {run.attempt}): "
            f"step {step!r} of attempt {attempt} not started"
        )
    return check_create_calculation(
        run.owner_id,
        tool,
        inputs=inputs,
        params=params,
        use_cache=use_cache,
        backend=backend,
        step=StepRef(workflow_run_id=run.id, name=step, index=index),
    )
