"""Notifications: what a run asks to be told (checked when asked), the outbox row its guarded
transition inserts in the same transaction, each user's webhook secret, and what the worker's
notifier needs (claim due deliveries under a lease, compose each body once, record each attempt).

Nothing here touches the network but the URL's DNS check: sending is the notifier's
(`workflows/worker/notifier.py`), after the run's own change committed, so it never delays it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from calculations.errors import InvalidInput
from calculations.models import Calculation, Notification, NotificationStatus, WebhookSecret, WorkflowRun
from calculations.notifications import UrlRefused, check_url, next_attempt_at
from calculations.run_kinds import RunKind
from calculations.states import TERMINAL_STATES, RunState
from emgapiv2.config import get_settings

DEFAULT_EVENTS = sorted(TERMINAL_STATES)
KINDS = {Calculation: "calculation", WorkflowRun: "workflow-run"}
PENDING, DELIVERED, FAILED = NotificationStatus.PENDING, NotificationStatus.DELIVERED, NotificationStatus.FAILED


def check_notify(owner_id: int, url: str, events: Sequence[str] | None, kind: RunKind[Any]) -> dict[str, Any]:
    """What a run stores in `notify`: the URL checked (422 saying why it is refused) and its states
    (default: the terminal ones), each one a run of this kind can reach. The owner's webhook secret is
    made now, so they can read it at once."""
    try:
        check_url(url)
    except UrlRefused as exc:
        raise InvalidInput(f"notify.url: {exc}") from None
    chosen = list(dict.fromkeys(events)) if events else DEFAULT_EVENTS
    if unknown := [state for state in chosen if state not in RunState.values]:
        raise InvalidInput(f"notify.events: unknown state {unknown[0]!r} (known: {', '.join(RunState.values)})")
    if never := [state for state in chosen if state not in kind.states]:
        raise InvalidInput(
            f"notify.events: a {kind.name} is never {never[0]} (it can be {', '.join(sorted(kind.states))})"
        )
    do_ensure_webhook_secret(owner_id)
    return {"url": url, "events": chosen}


def enqueue_notification(run: Calculation | WorkflowRun, to_state: str, sequence: int, at: datetime) -> None:
    """Called by `record_event` in the change's own transaction: one insert if `run` asked to be
    told of `to_state`, nothing else (no network, no query)."""
    notify = run.notify
    if not notify or to_state not in notify.get("events", ()):
        return
    Notification.objects.create(
        owner_id=run.owner_id,
        kind=KINDS[type(run)],
        run_id=run.id,
        sequence=sequence,
        state=to_state,
        url=notify["url"],
        created_at=at,
        next_attempt_at=at,
    )


def _new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def do_ensure_webhook_secret(user_id: int) -> WebhookSecret:
    """The user's webhook secret, made on first need."""
    found = WebhookSecret.objects.filter(user_id=user_id).first()
    if found is not None:
        return found
    WebhookSecret.objects.bulk_create([WebhookSecret(user_id=user_id, secret=_new_secret())], ignore_conflicts=True)
    return WebhookSecret.objects.get(user_id=user_id)  # ours, or one made meanwhile


@transaction.atomic
def do_rotate_webhook_secret(user_id: int) -> WebhookSecret:
    """A new secret: every delivery from now on (retries too) is signed with it."""
    secret = do_ensure_webhook_secret(user_id)
    secret.secret, secret.rotated_at = _new_secret(), timezone.now()
    secret.save(update_fields=["secret", "rotated_at"])
    return secret


def _links(kind: str, run: Calculation | WorkflowRun, state: str) -> dict[str, Any]:
    base = get_settings().public_url.rstrip("/") + "/api/v2"
    own = f"{base}/calculations/{run.id}" if kind == "calculation" else f"{base}/workflow-runs/{run.id}"
    links: dict[str, Any] = {"self": own, "crate": f"{own}/crate"}
    if isinstance(run, Calculation):
        links["logs"] = f"{own}/logs"
        if state == RunState.COMPLETE:
            outputs: dict[str, list[str]] = {}
            for file_id, role in run.output_files.order_by("output_role", "name").values_list("id", "output_role"):
                outputs.setdefault(role, []).append(f"{base}/files/{file_id}/content")
            links["outputs"] = outputs
    return links


def compose_payload(notification: Notification) -> bytes:
    """The event's JSON body, as the run is now: composed once (its first attempt), after the change's
    transaction committed, so it holds what was recorded with it (a verdict)."""
    model = Calculation if notification.kind == "calculation" else WorkflowRun
    run = model.objects.filter(id=notification.run_id).first()
    body: dict[str, Any] = {
        "delivery": str(notification.id),
        "id": str(notification.run_id),
        "kind": notification.kind,
        "state": notification.state,
        "at": notification.created_at.isoformat(),
    }
    if run is None:  # deleted since (its owner's account went): say what is known
        body.update(error="", links={}, verdict=None)
    else:
        current = run.state == notification.state  # not moved on: its error and verdict are this state's
        body["name"] = run.tool if isinstance(run, Calculation) else run.workflow
        body["error"] = run.error if current else ""
        body["links"] = _links(notification.kind, run, notification.state)
        body["verdict"] = run.verdict if current else None
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: what to send where, signed with its owner's current secret."""

    id: UUID
    url: str
    state: str
    body: bytes
    secret: str


def _due(now: datetime) -> Any:
    earlier_pending = Notification.objects.filter(
        run_id=OuterRef("run_id"), status=PENDING, sequence__lt=OuterRef("sequence")
    )
    return (
        Notification.objects.filter(status=PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .exclude(Exists(earlier_pending))  # in order per run: a later event waits for the earlier one
        .order_by("next_attempt_at", "sequence")
    )


@transaction.atomic
def do_claim_notifications(worker: str, *, batch: int, lease_seconds: float) -> list[Delivery]:
    """Up to `batch` due deliveries, the earliest pending one of each run, leased to `worker`: another
    worker takes one only once the lease ran out (this one died mid-send). Bodies composed now, once."""
    now = timezone.now()
    rows = list(_due(now).select_for_update(skip_locked=True)[:batch])
    if not rows:
        return []
    Notification.objects.filter(id__in=[row.id for row in rows]).update(
        claimed_by=worker, claimed_until=now + timedelta(seconds=lease_seconds)
    )
    secrets_by_owner = {owner: do_ensure_webhook_secret(owner).secret for owner in {row.owner_id for row in rows}}
    deliveries = []
    for row in rows:
        if row.payload is None:
            row.payload = compose_payload(row)
            Notification.objects.filter(id=row.id).update(payload=row.payload)
        deliveries.append(Delivery(row.id, row.url, row.state, bytes(row.payload), secrets_by_owner[row.owner_id]))
    return deliveries


@transaction.atomic
def do_record_delivery(
    notification_id: UUID, worker: str, *, status_code: int | None = None, error: str = ""
) -> NotificationStatus | None:
    """One attempt's outcome: delivered (a 2xx), or failed and tried again after the backoff, or given
    up (failed) once the next try would fall past EMGAPI_NOTIFY__GIVE_UP_AFTER_HOURS, saying why.
    None if the row is no longer this worker's (its lease ran out and another took it)."""
    row = Notification.objects.select_for_update().filter(id=notification_id, claimed_by=worker, status=PENDING).first()
    if row is None:
        return None
    now = timezone.now()
    row.attempts += 1
    row.last_attempt_at, row.last_status_code, row.claimed_by, row.claimed_until = now, status_code, "", None
    if status_code is not None and 200 <= status_code < 300:
        row.status, row.delivered_at, row.error = DELIVERED, now, ""
    else:
        settings = get_settings().notify
        row.error = error or f"the receiver answered {status_code}"
        retry_at = next_attempt_at(row.created_at, row.attempts, now, settings)
        if retry_at is None:
            row.status = FAILED
            row.error = (
                f"given up after {row.attempts} attempt{'s' if row.attempts != 1 else ''} over "
                f"{settings.give_up_after_hours:g} h; the last: {row.error}"
            )
        else:
            row.next_attempt_at = retry_at
    row.save()
    return NotificationStatus(row.status)


@transaction.atomic
def do_give_up_notification(notification_id: UUID, worker: str, reason: str) -> None:
    """A delivery that can never succeed (its URL is now refused): failed at once, saying why."""
    Notification.objects.filter(id=notification_id, claimed_by=worker, status=PENDING).update(
        status=FAILED,
        attempts=F("attempts") + 1,
        error=f"given up: {reason}",
        last_attempt_at=timezone.now(),
        claimed_by="",
        claimed_until=None,
    )


def do_expire_notifications() -> int:
    """Delete the notifications delivered or given up more than `notify.keep_days` after their run's
    change (the sweeper): their record has been readable that long. A pending one is never deleted."""
    before = timezone.now() - timedelta(days=get_settings().notify.keep_days)
    ended = (NotificationStatus.DELIVERED, NotificationStatus.FAILED)
    deleted, _ = Notification.objects.filter(status__in=ended, created_at__lt=before).delete()
    return deleted
