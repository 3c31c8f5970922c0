"""The only code that creates files and calculations or changes a calculation's state.

Every state change is a conditional UPDATE (`WHERE state IN (allowed sources) AND attempt = N`)
plus an appended CalculationEvent, in one transaction: a stale worker or a duplicate delivery
matches no row and is refused instead of overwriting newer state. Side effects on other systems
(triggering Prefect) run only after the transaction commits.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from pydantic import ValidationError

from calculations.caching import compute_cache_key
from calculations.errors import InvalidInput, InvalidTransition, NotFound, QuotaExceeded, StorageQuotaExceeded
from calculations.formats import HEAD_BYTES, FormatMismatch, check_format
from calculations.models import ApiToken, Calculation, CalculationEvent, CalculationInput, File
from calculations.provenance import Provenance, update_attempt
from calculations.states import ACTIVE_STATES, CalculationState, sources_of
from calculations.storage import get_storage
from calculations.storage.base import read_head
from calculations.tools import ToolSpec, UnknownTool, get_tool
from emgapiv2.config import get_settings
from workflows.dispatch import cancel_flow_run, dispatch_calculation

logger = logging.getLogger(__name__)

S = CalculationState
WORKER_ACTOR = "worker"
RECONCILER_ACTOR = "reconciler"


def user_actor(user_id: int) -> str:
    return f"user:{user_id}"


# --- access -------------------------------------------------------------------------------------


def access_file_by_id(user_id: int, file_id: UUID) -> File:
    try:
        return File.objects.get(id=file_id, owner_id=user_id)
    except File.DoesNotExist:
        raise NotFound(f"file {file_id} not found") from None


def access_calculation_by_id(user_id: int, calculation_id: UUID) -> Calculation:
    try:
        return Calculation.objects.get(id=calculation_id, owner_id=user_id)
    except Calculation.DoesNotExist:
        raise NotFound(f"calculation {calculation_id} not found") from None


# --- tokens -------------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def do_create_api_token(username: str, *, can_write: bool = True, expires_in: timedelta | None = None) -> str:
    """Create a token for `username` (creating the user if needed); return it in plain text once."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    token = f"emg_{secrets.token_urlsafe(32)}"
    ApiToken.objects.create(
        user=user,
        token_sha256=hash_token(token),
        prefix=token[:12],
        can_write=can_write,
        expires_at=timezone.now() + expires_in if expires_in else None,
    )
    return token


# --- files --------------------------------------------------------------------------------------

_UNSAFE_NAME_CHARACTERS = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_file_name(name: str) -> str:
    """A display name safe anywhere: no directories, no control characters, not empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME_CHARACTERS.sub("_", base).strip().lstrip(".")
    return base[:255] or "upload"


def check_storage_quota(owner_id: int, adding_bytes: int) -> None:
    quota = get_settings().quota.storage_bytes
    used = File.objects.filter(owner_id=owner_id).aggregate(total=Sum("size"))["total"] or 0
    if used + adding_bytes > quota:
        raise StorageQuotaExceeded(
            f"storage quota exceeded: you hold {used} bytes, this file is {adding_bytes}, the quota is {quota}; "
            "delete files or ask for more"
        )


def do_create_file(owner_id: int, name: str, stream: BinaryIO, *, size_hint: int | None = None) -> File:
    if size_hint is not None:
        check_storage_quota(owner_id, size_hint)
    # store the bytes first (outside the transaction: it may take long); an orphan blob is
    # harmless, a File row without its blob is not
    info = get_storage().put(stream)
    return File.objects.create(owner_id=owner_id, name=clean_file_name(name), size=info.size, sha256=info.sha256)


# --- submission ---------------------------------------------------------------------------------


def _format_validation_error(prefix: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{prefix}{location}: {error['msg']}" if location else f"{prefix.rstrip('.')}: {error['msg']}")
    return "; ".join(parts)


def check_create_calculation(
    owner_id: int,
    tool_name: str,
    *,
    inputs: Mapping[str, UUID],
    params: Mapping[str, Any],
    use_cache: bool = True,
    backend: str | None = None,
) -> Calculation:
    """Validate a submission (tool, backend, parameters, input roles, files and their formats), then create it."""
    try:
        spec = get_tool(tool_name)
    except UnknownTool as exc:
        raise NotFound(str(exc)) from None
    try:
        chosen_backend = spec.choose_backend(backend)
    except ValueError as exc:
        raise InvalidInput(f"backend: {exc}") from None
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
        file = File.objects.filter(id=file_id, owner_id=owner_id).first()
        if file is None:
            raise InvalidInput(f"input {role.name!r}: file {file_id} not found")
        head = read_head(storage, file.sha256, HEAD_BYTES)
        try:
            check_format(role.formats[0], head)
        except FormatMismatch as exc:
            raise InvalidInput(f"input {role.name!r}: file {file.name!r} {exc}") from None
        files[role.name] = file
    if spec.check_inputs is not None:
        try:
            spec.check_inputs(validated, {role: file.name for role, file in files.items()})
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    return do_create_calculation(
        owner_id,
        spec,
        params=validated.model_dump(mode="json"),
        files=files,
        use_cache=use_cache,
        backend=chosen_backend,
    )


def _lock_cache_key(cache_key: str) -> None:
    # Two identical submissions in parallel must see each other: serialise them per key.
    # SQLite needs nothing: its IMMEDIATE transactions already serialise every writer.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(cache_key[:15], 16)])


def _copy_outputs(source: Calculation, target: Calculation) -> None:
    File.objects.bulk_create(
        File(
            owner_id=target.owner_id,
            name=output.name,
            size=output.size,
            sha256=output.sha256,
            produced_by=target,
            output_role=output.output_role,
        )
        for output in source.output_files.order_by("output_role", "name")
    )


def _record_event(calc: Calculation, from_state: str, to_state: str, actor: str, reason: str) -> None:
    CalculationEvent.objects.create(
        calculation=calc, attempt=calc.attempt, from_state=from_state, to_state=to_state, actor=actor, reason=reason
    )


def _check_active_quota(owner_id: int) -> None:
    """Only calculations that run count: cache hits and followers cost nothing."""
    # one submitter per user at a time
    get_user_model().objects.select_for_update(no_key=True).filter(id=owner_id).first()
    limit = get_settings().quota.max_active_calculations
    active = Calculation.objects.filter(owner_id=owner_id, state__in=ACTIVE_STATES, cached_from__isnull=True).count()
    if active >= limit:
        raise QuotaExceeded(
            f"you have {active} calculations queued or running; the limit is {limit}: retry when some have finished"
        )


@transaction.atomic
def do_create_calculation(
    owner_id: int,
    spec: ToolSpec,
    *,
    params: dict[str, Any],
    files: Mapping[str, File],
    use_cache: bool,
    backend: str = "local",
) -> Calculation:
    input_sha256s = {role: file.sha256 for role, file in files.items()}
    cache_key = compute_cache_key(tool=spec.name, tool_version=spec.version, params=params, input_sha256s=input_sha256s)
    provenance = Provenance(tool=spec.name, tool_version=spec.version, params=params, inputs=input_sha256s)
    calc = Calculation(
        owner_id=owner_id,
        tool=spec.name,
        tool_version=spec.version,
        params=params,
        cache_key=cache_key,
        use_cache=use_cache,
        backend=backend,
        provenance=provenance.model_dump(mode="json"),
    )
    actor = user_actor(owner_id)

    hit = leader = None
    if use_cache:
        _lock_cache_key(cache_key)
        same = Calculation.objects.filter(cache_key=cache_key).order_by("created_at")
        hit = same.filter(state=S.COMPLETE).first()
        if hit is None:
            leader = same.filter(state__in=ACTIVE_STATES, cached_from__isnull=True).first()

    if hit is not None:
        now = timezone.now()
        calc.state = S.COMPLETE
        calc.cached_from = hit.cached_from or hit
        calc.provenance = hit.provenance
        calc.backend = hit.backend  # the backend that ran it
        calc.started_at = calc.finished_at = now
        calc.save()
        _copy_outputs(hit, calc)
        _record_event(calc, "", S.COMPLETE, actor, f"cache hit: identical to calculation {calc.cached_from_id}")
    elif leader is not None:
        calc.cached_from = leader
        calc.save()
        _record_event(calc, "", S.QUEUED, actor, f"following identical calculation {leader.id} in flight")
    else:
        _check_active_quota(owner_id)
        calc.save()
        _record_event(calc, "", S.QUEUED, actor, "submitted")
        transaction.on_commit(lambda: dispatch_calculation(calc.id))

    CalculationInput.objects.bulk_create(
        CalculationInput(calculation=calc, role=role, file=file) for role, file in files.items()
    )
    return calc


# --- transitions --------------------------------------------------------------------------------


# Row locks are FOR NO KEY UPDATE: a transition changes no key, and a plain FOR UPDATE would block
# the KEY SHARE lock that inserting a follower (cached_from -> this row) takes, while the creator
# holds the cache key's lock the completion then wants: a deadlock, found by 50 concurrent submissions.


def _transition(
    calculation_id: UUID,
    attempt: int,
    target: CalculationState,
    /,
    *,
    actor: str,
    reason: str = "",
    **fields: Any,
) -> Calculation:
    """Move one attempt of a calculation to `target` if its current state allows it; log the event.
    `fields` may set `attempt` too: a retry moves attempt N to QUEUED as attempt N + 1."""
    calc = Calculation.objects.select_for_update(no_key=True).filter(id=calculation_id).first()
    if calc is None:
        raise NotFound(f"calculation {calculation_id} not found")
    updated = Calculation.objects.filter(id=calculation_id, attempt=attempt, state__in=sources_of(target)).update(
        state=target, updated_at=timezone.now(), **fields
    )
    if not updated:
        raise InvalidTransition(
            f"calculation {calculation_id} is {calc.state} (attempt {calc.attempt}); "
            f"attempt {attempt} cannot move to {target}"
        )
    from_state = calc.state
    calc.refresh_from_db()
    _record_event(calc, from_state, target, actor, reason)
    return calc


@transaction.atomic
def do_record_flow_run(calculation_id: UUID, attempt: int, flow_run_id: UUID) -> bool:
    """Remember which Prefect flow run serves this attempt; False if the attempt moved on."""
    return bool(
        Calculation.objects.filter(id=calculation_id, attempt=attempt, flow_run_id__isnull=True).update(
            flow_run_id=flow_run_id
        )
    )


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
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    provenance = update_attempt(calc.provenance, attempt, backend=backend, host=host, workdir=workdir, worker=worker)
    fields: dict[str, Any] = {"backend": backend, "provenance": provenance, "heartbeat_at": timezone.now()}
    if flow_run_id is not None:
        fields["flow_run_id"] = flow_run_id
    return _transition(calculation_id, attempt, S.INITIALIZING, actor=WORKER_ACTOR, reason=f"on {host}", **fields)


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
) -> Calculation:
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    now = timezone.now()
    provenance = update_attempt(
        calc.provenance, attempt, job_id=job_id, argv=argv, started_at=now, image=image, image_digest=image_digest
    )
    provenance["executable"] = executable
    provenance["image"], provenance["image_digest"] = image, image_digest
    return _transition(
        calculation_id,
        attempt,
        S.RUNNING,
        actor=WORKER_ACTOR,
        reason=f"job {job_id} started",
        backend_job_id=job_id,
        started_at=now,
        provenance=provenance,
    )


@dataclass(frozen=True)
class OutputBlob:
    role: str
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class JobOutcome:
    """What the worker learnt about a finished job, recorded whatever the outcome."""

    exit_code: int | None
    resource_usage: Mapping[str, float]
    stdout_sha256: str | None
    stderr_sha256: str | None


def _finish_fields(calc: Calculation, attempt: int, outcome: JobOutcome, **provenance: Any) -> dict[str, Any]:
    now = timezone.now()
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
def do_complete_calculation(
    calculation_id: UUID, attempt: int, *, outputs: list[OutputBlob], outcome: JobOutcome
) -> Calculation:
    """Register validated outputs and complete; identical calculations that followed this one complete too."""
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    by_role: dict[str, list[str]] = {}
    for output in outputs:
        by_role.setdefault(output.role, []).append(output.sha256)
    fields = _finish_fields(calc, attempt, outcome, outputs=by_role)
    calc = _transition(calculation_id, attempt, S.COMPLETE, actor=WORKER_ACTOR, reason="tool succeeded", **fields)
    File.objects.bulk_create(
        File(
            owner_id=calc.owner_id,
            name=output.name,
            size=output.size,
            sha256=output.sha256,
            produced_by=calc,
            output_role=output.role,
        )
        for output in outputs
    )
    _lock_cache_key(calc.cache_key)  # no follower slips in unseen (see _release_followers)
    for follower in calc.cache_followers.filter(state=S.QUEUED):
        _transition(
            follower.id,
            follower.attempt,
            S.COMPLETE,
            actor=WORKER_ACTOR,
            reason=f"identical calculation {calc.id} completed",
            provenance=calc.provenance,
            started_at=calc.started_at,
            finished_at=calc.finished_at,
            exit_code=calc.exit_code,
        )
        _copy_outputs(calc, follower)
    return calc


def _release_followers(calc: Calculation) -> None:
    """The calculation they followed failed: each follower now runs on its own. Under the key's
    lock, as in do_create_calculation: a follower created at this moment is either seen here or
    sees the leader ended (and does not follow it)."""
    _lock_cache_key(calc.cache_key)
    for follower_id in calc.cache_followers.filter(state=S.QUEUED).values_list("id", flat=True):
        Calculation.objects.filter(id=follower_id).update(cached_from=None)
        transaction.on_commit(lambda follower_id=follower_id: dispatch_calculation(follower_id))


@transaction.atomic
def do_fail_calculation(
    calculation_id: UUID,
    attempt: int,
    *,
    state: CalculationState,
    error: str,
    outcome: JobOutcome | None = None,
    actor: str = WORKER_ACTOR,
    retry: bool = True,
) -> Calculation:
    """End an attempt in EXECUTOR_ERROR (the tool failed: final) or SYSTEM_ERROR (the platform
    failed). A platform failure with attempts left queues a new attempt instead, after a backoff,
    unless `retry` is off; only the last one ends in SYSTEM_ERROR."""
    if state not in (S.EXECUTOR_ERROR, S.SYSTEM_ERROR):
        raise ValueError(f"{state} is not a failure state")
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    fields = _finish_fields(calc, attempt, outcome) if outcome else {"finished_at": timezone.now()}
    settings = get_settings().retry
    if retry and state == S.SYSTEM_ERROR and attempt < settings.max_attempts and calc.state in sources_of(S.QUEUED):
        return _retry(calc, attempt, error=error, actor=actor, provenance=fields.get("provenance"))
    calc = _transition(calculation_id, attempt, state, actor=actor, reason=error[:2000], error=error, **fields)
    _release_followers(calc)
    return calc


def _retry(calc: Calculation, attempt: int, *, error: str, actor: str, provenance: Any) -> Calculation:
    """Queue attempt + 1 of a calculation the platform failed; its followers keep following it."""
    delay = get_settings().retry.delay_before(attempt + 1)
    fields: dict[str, Any] = {
        "attempt": attempt + 1,
        "flow_run_id": None,
        "backend_job_id": "",
        "heartbeat_at": None,
        "not_before": timezone.now() + timedelta(seconds=delay),
        "error": error,
    }
    # the failed attempt keeps its record: when it ended, and its exit code, usage and logs if known
    fields["provenance"] = provenance or update_attempt(calc.provenance, attempt, finished_at=timezone.now())
    reason = f"system error on attempt {attempt}: {error[:1800]}; retrying as attempt {attempt + 1} in {delay:.0f} s"
    calc = _transition(calc.id, attempt, S.QUEUED, actor=actor, reason=reason, **fields)
    transaction.on_commit(lambda: dispatch_calculation(calc.id))
    return calc


@transaction.atomic
def do_request_cancel(calculation_id: UUID, *, actor: str) -> Calculation:
    """Ask for a calculation to stop. One not yet started is CANCELED at once; a running one is
    CANCELING until its worker has stopped the tool."""
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    if calc.state == S.CANCELING:
        return calc
    if calc.state not in ACTIVE_STATES:
        raise InvalidTransition(f"calculation {calc.id} is already {calc.state}")
    was_queued = calc.state == S.QUEUED
    calc = _transition(calc.id, calc.attempt, S.CANCELING, actor=actor, reason="cancel requested")
    if was_queued:
        calc = _transition(
            calc.id, calc.attempt, S.CANCELED, actor=actor, reason="canceled before it started",
            finished_at=timezone.now(),
        )  # fmt: skip
        _release_followers(calc)
    if calc.flow_run_id is not None:
        flow_run_id = calc.flow_run_id
        transaction.on_commit(lambda: cancel_flow_run(flow_run_id))
    return calc


@transaction.atomic
def do_finish_cancel(
    calculation_id: UUID, attempt: int, *, reason: str, outcome: JobOutcome | None = None, actor: str = WORKER_ACTOR
) -> Calculation:
    calc = Calculation.objects.select_for_update(no_key=True).get(id=calculation_id)
    fields = _finish_fields(calc, attempt, outcome) if outcome else {"finished_at": timezone.now()}
    calc = _transition(calculation_id, attempt, S.CANCELED, actor=actor, reason=reason, **fields)
    _release_followers(calc)
    return calc
