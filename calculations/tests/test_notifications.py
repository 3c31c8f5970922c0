"""Notifications without Prefect or a network: what a run may ask for (a refused URL is a 422 saying
why), the outbox row its state change inserts, the body and its signature, the retry schedule, the
order per run, giving up with a reason, the routes, and the user's webhook secret."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.db import transaction
from django.utils import timezone

from calculations.actions import (
    do_claim_notifications,
    do_create_api_token,
    do_record_delivery,
)
from calculations.actions.transitions import WORKER_ACTOR, transition
from calculations.models import Calculation, Notification
from calculations.notifications import next_attempt_at, retry_delay, sign
from calculations.states import RunState
from conftest import ApiClient
from emgapiv2.config import NotifySettings, get_settings

S = RunState
Upload = Callable[[str, bytes], str]
HOOK = "http://93.184.216.34/hook"  # a public address, as a literal: no DNS in these tests


@pytest.fixture
def molecule(uploaded: Upload) -> str:
    return uploaded("m.smi", b"CCO\n")


def submit(client: ApiClient, file_id: str, notify: Any = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"inputs": {"molecules": file_id}, "params": {}, "use_cache": False, **extra}
    if notify is not None:
        body["notify"] = notify
    return client.post("/tools/obabel/calculations", body)


def move(calc_id: UUID | str, *targets: RunState, **fields: Any) -> None:
    """The calculation through `targets`, as its worker would move it (each a guarded transition)."""
    for target in targets:
        with transaction.atomic():
            transition(UUID(str(calc_id)), 1, target, actor=WORKER_ACTOR, **(fields if target == targets[-1] else {}))


def test_a_run_that_reaches_a_state_it_asked_for_gets_one_outbox_row_and_others_none(
    alice: ApiClient, molecule: str
) -> None:
    asked = submit(alice, molecule, {"url": HOOK})
    assert asked.status_code == 202, asked.content
    silent = submit(alice, molecule)
    for calc in (asked.json()["id"], silent.json()["id"]):
        move(calc, S.INITIALIZING, S.RUNNING, S.EXECUTOR_ERROR, error="exit 1")
    rows = list(Notification.objects.all())
    assert [(str(row.run_id), row.state, row.status, row.url) for row in rows] == [
        (asked.json()["id"], "EXECUTOR_ERROR", "pending", HOOK)
    ]
    # the default is every terminal state, stored with the run
    stored = Calculation.objects.get(id=asked.json()["id"]).notify
    assert stored == {"url": HOOK, "events": ["CANCELED", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"]}


def test_a_cancel_of_a_queued_run_notifies_canceled_only_and_a_named_state_is_notified_too(
    alice: ApiClient, molecule: str
) -> None:
    calc = submit(alice, molecule, {"url": HOOK, "events": ["QUEUED", "CANCELED"]}).json()
    assert alice.post(f"/calculations/{calc['id']}/cancel").status_code == 202
    states = list(Notification.objects.order_by("sequence").values_list("state", flat=True))
    assert states == ["QUEUED", "CANCELED"]  # not CANCELING: it was not asked for


def test_an_unknown_state_is_a_422_that_names_it(alice: ApiClient, molecule: str) -> None:
    response = submit(alice, molecule, {"url": HOOK, "events": ["COMPLETE", "DONE"]})
    assert response.status_code == 422
    assert "unknown state 'DONE'" in response.json()["detail"]
    assert not Calculation.objects.exists()


def test_a_state_a_calculation_never_reaches_is_a_422(alice: ApiClient, molecule: str) -> None:
    """Only a workflow run pauses: a calculation asking to hear of PAUSED would wait for nothing."""
    response = submit(alice, molecule, {"url": HOOK, "events": ["PAUSED"]})
    assert response.status_code == 422
    assert "a calculation is never PAUSED" in response.json()["detail"]
    assert not Calculation.objects.exists()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://93.184.216.34/x", "must be http or https"),
        ("http:///hook", "no host"),
        ("http://user:pw@93.184.216.34/", "credentials"),
        ("http://10.1.2.3/hook", "10.1.2.3, a private address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://[::1]:8080/", "::1, a loopback address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://240.0.0.1/", "a reserved address"),
        ("http://[::ffff:10.0.0.1]/", "a private address"),
        (f"{HOOK}?{'x' * 2100}", "at most 2048 characters"),
    ],
)
def test_a_url_the_platform_may_not_call_is_a_422_that_says_why(
    alice: ApiClient, molecule: str, url: str, why: str
) -> None:
    response = submit(alice, molecule, {"url": url})
    assert response.status_code == 422, response.content
    assert why in response.json()["detail"], response.json()["detail"]
    assert not Calculation.objects.exists()


def test_a_name_that_resolves_to_loopback_is_refused_unless_allowed(
    alice: ApiClient, molecule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings().notify, "allowed_private_hosts", [])
    refused = submit(alice, molecule, {"url": "http://localhost:9/hook"})
    assert refused.status_code == 422
    assert "'localhost' resolves to 127.0.0.1, a loopback address" in refused.json()["detail"]
    assert "EMGAPI_NOTIFY__ALLOWED_PRIVATE_HOSTS" in refused.json()["detail"]
    monkeypatch.setattr(get_settings().notify, "allowed_private_hosts", ["127.0.0.0/8"])
    assert submit(alice, molecule, {"url": "http://localhost:9/hook"}).status_code == 202


def test_a_workflow_run_asks_as_a_calculation_does(alice: ApiClient, molecule: str, workflow_catalogue: Any) -> None:
    steps = {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{molecule}"}}}
    refused = alice.post(
        "/workflows/pipeline/runs", {"params": {"steps": steps}, "notify": {"url": "http://10.0.0.1/"}}
    )
    assert refused.status_code == 422 and "private address" in refused.json()["detail"]
    run = alice.post("/workflows/pipeline/runs", {"params": {"steps": steps}, "notify": {"url": HOOK}}).json()
    alice.post(f"/workflow-runs/{run['id']}/cancel")
    notification = alice.get("/notifications", run=run["id"]).json()["items"][0]
    assert (notification["kind"], notification["state"], notification["run"]) == ("workflow-run", "CANCELED", run["id"])


def test_the_body_is_composed_once_after_commit_with_the_verdict_and_every_retry_sends_the_same_bytes(
    alice: ApiClient, molecule: str
) -> None:
    calc = submit(alice, molecule, {"url": HOOK}).json()
    verdict = {"outcome": "identical", "outputs": {}}
    move(calc["id"], S.INITIALIZING, S.RUNNING)
    with transaction.atomic():  # as the action that ends a verifying rerun: the verdict right after COMPLETE
        transition(UUID(calc["id"]), 1, S.COMPLETE, actor=WORKER_ACTOR)
        Calculation.objects.filter(id=calc["id"]).update(verdict=verdict)
    [first] = do_claim_notifications("w1", batch=10, lease_seconds=60)
    body = json.loads(first.body)
    base = "http://127.0.0.1:8000/api/v2"
    assert body == {
        "delivery": str(first.id),
        "id": calc["id"],
        "kind": "calculation",
        "name": "obabel",
        "state": "COMPLETE",
        "error": "",
        "verdict": verdict,
        "at": body["at"],
        "links": {
            "self": f"{base}/calculations/{calc['id']}",
            "crate": f"{base}/calculations/{calc['id']}/crate",
            "logs": f"{base}/calculations/{calc['id']}/logs",
            "outputs": {},
        },
    }
    assert do_claim_notifications("w2", batch=10, lease_seconds=60) == []  # leased to w1
    assert do_record_delivery(first.id, "w2", status_code=200) is None  # not w2's to record
    do_record_delivery(first.id, "w1", error="ConnectError: refused")
    Notification.objects.filter(id=first.id).update(next_attempt_at=timezone.now())
    Calculation.objects.filter(id=calc["id"]).update(verdict=None, error="changed since")
    [again] = do_claim_notifications("w2", batch=10, lease_seconds=60)
    assert again.body == first.body


def test_a_worker_that_died_mid_send_leaves_the_row_to_the_next_claim_after_its_lease(
    alice: ApiClient, molecule: str
) -> None:
    calc = submit(alice, molecule, {"url": HOOK, "events": ["QUEUED"]}).json()
    [claimed] = do_claim_notifications("dead", batch=10, lease_seconds=60)
    assert do_claim_notifications("alive", batch=10, lease_seconds=60) == []
    Notification.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))  # its lease ran out
    [taken] = do_claim_notifications("alive", batch=10, lease_seconds=60)
    assert taken.id == claimed.id
    assert do_record_delivery(taken.id, "alive", status_code=204) == "delivered"
    assert alice.get(f"/notifications/{taken.id}").json()["status"] == "delivered"
    assert calc


def test_the_signature_is_githubs_hmac_sha256_of_the_body_with_the_users_secret(alice: ApiClient) -> None:
    secret = alice.get("/users/me/webhook-secret").json()["secret"]
    body = b'{"state":"COMPLETE"}'
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == expected


def test_the_user_reads_and_rotates_their_own_secret_and_no_one_else_sees_it(alice: ApiClient, bob: ApiClient) -> None:
    first = alice.get("/users/me/webhook-secret").json()
    assert first == alice.get("/users/me/webhook-secret").json()  # made once, on first need
    rotated = alice.post("/users/me/webhook-secret").json()
    assert rotated["secret"] != first["secret"] and rotated["rotated_at"]
    assert alice.get("/users/me/webhook-secret").json()["secret"] == rotated["secret"]
    assert bob.get("/users/me/webhook-secret").json()["secret"] not in (first["secret"], rotated["secret"])
    read_only = ApiClient(do_create_api_token("alice", can_write=False))
    refused = read_only.get("/users/me/webhook-secret")
    assert refused.status_code == 403 and rotated["secret"] not in refused.content.decode()


def test_a_rotated_secret_is_not_kept_for_an_idempotent_retry(alice: ApiClient) -> None:
    """An Idempotency-Key keeps the answer it replays: never one that holds a secret."""
    from calculations.models import IdempotentRequest

    headers = {"Idempotency-Key": "rotate-1"}
    first = alice.client.post("/api/v2/users/me/webhook-secret", headers=headers).json()["secret"]
    again = alice.client.post("/api/v2/users/me/webhook-secret", headers=headers).json()["secret"]
    assert again != first and again == alice.get("/users/me/webhook-secret").json()["secret"]
    assert not any(
        again.encode() in bytes(body or b"") for body in IdempotentRequest.objects.values_list("body", flat=True)
    )


def test_retries_back_off_exponentially_and_stop_after_a_day() -> None:
    settings = NotifySettings(backoff_seconds=10, backoff_factor=2, max_backoff_seconds=3600, give_up_after_hours=24)
    assert [retry_delay(n, settings).total_seconds() for n in range(1, 11)] == [
        10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600
    ]  # fmt: skip
    created = timezone.now()
    assert next_attempt_at(created, 3, created + timedelta(hours=1), settings) == created + timedelta(
        hours=1, seconds=40
    )
    assert next_attempt_at(created, 30, created + timedelta(hours=23, minutes=30), settings) is None


def test_a_runs_later_event_waits_until_the_earlier_one_is_delivered_or_given_up(
    alice: ApiClient, molecule: str
) -> None:
    events = ["QUEUED", "INITIALIZING", "RUNNING"]
    calc = submit(alice, molecule, {"url": HOOK, "events": events}).json()
    other = submit(alice, molecule, {"url": HOOK, "events": ["QUEUED"]}).json()
    move(calc["id"], S.INITIALIZING, S.RUNNING)
    seen: list[tuple[str, str]] = []
    for outcome in ({"error": "boom"}, {"status_code": 200}, {"give_up": True}, {"status_code": 200}):
        claimed = do_claim_notifications("w", batch=10, lease_seconds=60)
        seen += [(str(Notification.objects.get(id=d.id).run_id), d.state) for d in claimed]
        for delivery in claimed:
            if "give_up" in outcome:
                Notification.objects.filter(id=delivery.id).update(created_at=timezone.now() - timedelta(days=2))
                do_record_delivery(delivery.id, "w", error="ReadTimeout")
            else:
                do_record_delivery(delivery.id, "w", **outcome)
        Notification.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    ours = [state for run, state in seen if run == calc["id"]]
    # QUEUED failed once, then delivered; only then INITIALIZING (given up), then RUNNING
    assert ours == ["QUEUED", "QUEUED", "INITIALIZING", "RUNNING"]
    assert ("QUEUED" in [state for run, state in seen if run == other["id"]]) and seen[:2] == [
        (calc["id"], "QUEUED"),
        (other["id"], "QUEUED"),
    ]


def test_a_notification_given_up_says_why(alice: ApiClient, molecule: str) -> None:
    submit(alice, molecule, {"url": HOOK, "events": ["QUEUED"]})
    [delivery] = do_claim_notifications("w", batch=10, lease_seconds=60)
    # its run changed a day ago, less than the next backoff: the next try would fall past the give-up time
    Notification.objects.update(created_at=timezone.now() - timedelta(hours=24) + timedelta(milliseconds=100))
    do_record_delivery(delivery.id, "w", status_code=503, error="the receiver answered 503: busy")
    shown = alice.get(f"/notifications/{delivery.id}").json()
    assert shown["status"] == "failed" and shown["next_attempt_at"] is None
    assert shown["error"] == "given up after 1 attempt over 24 h; the last: the receiver answered 503: busy"
    assert shown["last_status_code"] == 503 and shown["attempts"] == 1


def test_the_list_is_the_users_own_newest_first_filtered_by_run_and_status(
    alice: ApiClient, bob: ApiClient, molecule: str
) -> None:
    first = submit(alice, molecule, {"url": HOOK, "events": ["QUEUED"]}).json()
    second = submit(alice, molecule, {"url": HOOK, "events": ["QUEUED", "CANCELED"]}).json()
    alice.post(f"/calculations/{second['id']}/cancel")
    listed = alice.get("/notifications").json()
    assert listed["count"] == 3
    assert [(item["run"], item["state"]) for item in listed["items"]] == [
        (second["id"], "CANCELED"),
        (second["id"], "QUEUED"),
        (first["id"], "QUEUED"),
    ]
    assert [item["state"] for item in alice.get("/notifications", run=second["id"]).json()["items"]] == [
        "CANCELED",
        "QUEUED",
    ]
    assert alice.get("/notifications", status="delivered").json()["count"] == 0
    assert alice.get("/notifications", status="sent").status_code == 422
    assert bob.get("/notifications").json()["count"] == 0
    mine = listed["items"][0]["id"]
    assert bob.get(f"/notifications/{mine}").status_code == 404
    assert alice.get(f"/notifications/{mine}").json()["payload"] is None  # composed at its first attempt
