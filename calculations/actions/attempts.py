"""An attempt's life, as the worker and the reconciler report it: started, running, heartbeating,
ended. How it ended decides the calculation's next state through the one policy table
(`calculations/policies.py`); every write is fenced by the attempt number."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from calculations.actions.files import (
    OutputBlob,
    add_output_files,
    do_release_outputs,
    lock_blobs,
    new_bytes,
    quota_message,
)
from calculations.actions.followers import complete_followers, release_followers
from calculations.actions.rows import first_row
from calculations.actions.submissions import check_step_slot
from calculations.actions.transitions import WORKER_ACTOR, apply_transition, check_attempt, lock_calculation
from calculations.actions.verdicts import record_calculation_verdict
from calculations.metrics import observe_attempt_end
from calculations.models import Calculation
from calculations.orchestrator import launch_after_commit
from calculations.policies import POLICIES, AttemptEnd, decide
from calculations.provenance import Provenance, update_attempt
from calculations.resources import limit_summary, next_grant, retry_reason
from calculations.states import ATTEMPT_IN_PROGRESS_STATES, RunState
from emgapiv2.config import get_settings

S = RunState


@dataclass(frozen=True)
class JobOutcome:
    """What the worker learnt about a finished job, recorded whatever the outcome."""

    exit_code: int | None
    resource_usage: Mapping[str, float]
    stdout_sha256: str | None
    stderr_sha256: str | None


@transaction.atomic
def do_start_calculation(
    calculation_id: UUID,
    attempt: int,
    *,
    flow_run_id: UUID | None,
    backend: str,
    host: str,
    workdir: str,
    worker: str = "",
) -> Calculation:
    """The worker starts attempt `attempt`. A workflow run's step may have to wait for its owner's
    quota first (QuotaExceeded: it stays QUEUED, and counts nothing while it waits)."""
    step_of = first_row(Calculation.objects.filter(id=calculation_id).values_list("owner_id", "workflow_run_id"))
    if step_of is not None and step_of[1] is not None:
        check_step_slot(*step_of)  # the user first, then the row: the order every action takes them in
    calc = lock_calculation(calculation_id)
    provenance = update_attempt(
        calc.provenance, attempt, backend=backend, host=host, workdir=workdir, worker=worker,
        resources=calc.provenance.get("resources", {}),  # what this attempt is given
    )  # fmt: skip
    fields: dict[str, Any] = {
        "backend": backend, "provenance": provenance, "heartbeat_at": timezone.now(), "worker": worker
    }  # fmt: skip
    if flow_run_id is not None and flow_run_id != calc.flow_run_id:  # (one launched from the dashboard)
        fields["flow_run_id"] = flow_run_id
    return apply_transition(calc, attempt, S.INITIALIZING, actor=WORKER_ACTOR, reason=f"on {host}", **fields)


@transaction.atomic
def do_mark_running(
    calculation_id: UUID,
    attempt: int,
    *,
    job_id: str,
    argv: list[str],
    executable: str | None,
    image: str | None = None,
    image_digest: str | None = None,
    job_details: dict[str, str] | None = None,
) -> Calculation:
    calc = lock_calculation(calculation_id)
    now = timezone.now()
    provenance = update_attempt(
        calc.provenance, attempt, job_id=job_id, argv=argv, started_at=now, image=image, image_digest=image_digest,
        job_details=job_details or {},
    )  # fmt: skip
    provenance["executable"] = executable
    provenance["image"], provenance["image_digest"] = image, image_digest
    return apply_transition(
        calc,
        attempt,
        S.RUNNING,
        actor=WORKER_ACTOR,
        reason=f"job {job_id} started",
        backend_job_id=job_id,
        started_at=now,
        provenance=provenance,
    )


def do_record_heartbeats(attempts: Mapping[UUID, int]) -> None:
    """The worker running these attempts (calculation id -> attempt) is alive. Fenced like every
    write: a slow worker still holding attempt N must not keep attempt N + 1 looking alive."""
    by_attempt: dict[int, list[UUID]] = defaultdict(list)
    for calculation_id, attempt in attempts.items():
        by_attempt[attempt].append(calculation_id)
    now = timezone.now()
    for attempt, ids in by_attempt.items():  # attempts are few (1 to max_attempts): few queries
        Calculation.objects.filter(id__in=ids, attempt=attempt, state__in=ATTEMPT_IN_PROGRESS_STATES).update(
            heartbeat_at=now
        )


def _finish_fields(calc: Calculation, attempt: int, outcome: JobOutcome | None, **provenance: Any) -> dict[str, Any]:
    now = timezone.now()
    if outcome is None:
        return {"finished_at": now}
    record = update_attempt(
        calc.provenance,
        attempt,
        finished_at=now,
        exit_code=outcome.exit_code,
        resource_usage=dict(outcome.resource_usage),
        stdout_sha256=outcome.stdout_sha256,
        stderr_sha256=outcome.stderr_sha256,
    )
    record.update(provenance)
    return {
        "finished_at": now,
        "exit_code": outcome.exit_code,
        "provenance": Provenance(**record).model_dump(mode="json"),
    }


@transaction.atomic
def do_end_attempt(
    calculation_id: UUID,
    attempt: int,
    end: AttemptEnd,
    *,
    message: str = "",
    outputs: Sequence[OutputBlob] = (),
    outcome: JobOutcome | None = None,
    actor: str = WORKER_ACTOR,
) -> Calculation:
    """Record how attempt `attempt` ended and move the calculation on, as the policy table says:
    COMPLETE with its outputs registered (and its followers completed), a failure state whose error
    is `message`, CANCELED if a cancel was requested meanwhile, or QUEUED as the next attempt."""
    calc = lock_calculation(calculation_id)
    check_attempt(calc, attempt)
    adding = 0
    if end is AttemptEnd.SUCCEEDED:
        lock_blobs(outputs)  # the quota and the output rows below count the same bytes as new
        adding = new_bytes(calc.owner_id, [(output.sha256, output.size) for output in outputs])
        if too_much := _outputs_over_quota(calc, adding):
            end, message = AttemptEnd.OUTPUTS_TOO_LARGE, too_much
    limit = POLICIES[end].escalates
    given, more = next_grant(calc.provenance, attempt, limit) if limit else (None, None)
    decision = decide(end, current_state=S(calc.state), attempt=attempt, can_escalate=more is not None)
    observe_attempt_end(calc, end, decision.state)
    if decision.state == S.COMPLETE:
        return _complete(calc, attempt, outputs, outcome, actor, adding)
    do_release_outputs(outputs)  # stored by the worker, kept by no one
    fields = _finish_fields(calc, attempt, outcome)
    if decision.escalated and limit and given and more:
        provenance = {**(fields.get("provenance") or calc.provenance), "resources": more}  # the next attempt's
        reason = retry_reason(limit, given, more[limit], attempt=attempt)
        return _queue_next_attempt(
            calc, attempt, message, actor, {**fields, "provenance": provenance}, 0, reason=reason
        )
    if decision.state == S.QUEUED:
        return _queue_next_attempt(calc, attempt, message, actor, fields, decision.retry_in_seconds or 0)
    if limit and decision.state != S.CANCELED:
        max_attempts = get_settings().retry.max_attempts
        message = limit_summary(calc.provenance, limit, given, attempt=attempt, max_attempts=max_attempts)
    if decision.state == S.CANCELED:
        if end is AttemptEnd.CANCELED:
            reason = message or "canceled"
        elif decision.outputs_discarded:
            reason = "canceled as the tool finished; outputs discarded"
        else:
            reason = f"canceled; meanwhile {end.value}" + (f": {message[:1800]}" if message else "")
        calc = apply_transition(calc, attempt, S.CANCELED, actor=actor, reason=reason, **fields)
    else:
        calc = apply_transition(
            calc, attempt, decision.state, actor=actor, reason=message[:2000], error=message, **fields
        )
    record_calculation_verdict(calc)
    release_followers(calc)
    return calc


def _outputs_over_quota(calc: Calculation, adding: int) -> str | None:
    # a TES task's outputs replace the scratch space it reserved
    return quota_message(calc.owner_id, adding, f"{calc.tool}'s output", excluding=calc.id)


def _complete(
    calc: Calculation,
    attempt: int,
    outputs: Sequence[OutputBlob],
    outcome: JobOutcome | None,
    actor: str,
    adding: int,
) -> Calculation:
    by_role: dict[str, list[str]] = {}
    for output in outputs:
        by_role.setdefault(output.role, []).append(output.sha256)
    fields = _finish_fields(calc, attempt, outcome, outputs=by_role)
    calc = apply_transition(calc, attempt, S.COMPLETE, actor=actor, reason="tool succeeded", **fields)
    add_output_files(calc, outputs, new=adding)
    record_calculation_verdict(calc)
    complete_followers(calc)
    return calc


def _queue_next_attempt(
    calc: Calculation,
    attempt: int,
    error: str,
    actor: str,
    fields: dict[str, Any],
    delay_seconds: float,
    *,
    reason: str = "",
) -> Calculation:
    """Attempt + 1 of a calculation the platform failed, launched after its backoff; its followers
    keep following it."""
    # the failed attempt keeps its record: when it ended, and its exit code, usage and logs if known
    provenance = fields.get("provenance") or update_attempt(calc.provenance, attempt, finished_at=timezone.now())
    reason = reason or (
        f"system error on attempt {attempt}: {error[:1800]}; retrying as attempt {attempt + 1} in {delay_seconds:.0f} s"
    )
    calc = apply_transition(
        calc,
        attempt,
        S.QUEUED,
        actor=actor,
        reason=reason,
        attempt=attempt + 1,
        flow_run_id=None,
        backend_job_id="",
        heartbeat_at=None,
        worker="",
        not_before=timezone.now() + timedelta(seconds=delay_seconds),
        error=error,
        provenance=provenance,
    )
    launch_after_commit(calc)
    return calc
