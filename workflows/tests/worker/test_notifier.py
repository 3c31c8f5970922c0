"""The notifier, without Prefect: it POSTs each notification signed to a real receiver on 127.0.0.1,
records every attempt, keeps a run's events in order while the receiver is down, follows no
redirect, reads little of an answer, and connects to the very address it checked."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from calculations.actions import do_ensure_webhook_secret
from calculations.actions.transitions import WORKER_ACTOR, transition
from calculations.models import Calculation, Notification
from calculations.states import RunState
from calculations.tests.factories import make_calculation
from emgapiv2.config import get_settings
from workflows.tests.receiver import Receiver
from workflows.worker.notifier import deliver_once, make_client

S = RunState
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


def _run(url: str, *targets: RunState, events: list[str] | None = None) -> Calculation:
    calc = make_calculation(S.QUEUED)
    Calculation.objects.filter(id=calc.id).update(notify={"url": url, "events": events or ["COMPLETE"]})
    for target in targets:
        with transaction.atomic():
            transition(calc.id, 1, target, actor=WORKER_ACTOR)
    return calc


def _pass() -> int:
    async def one() -> int:
        async with make_client(get_settings().notify) as client:
            claimed = await deliver_once("test-worker", client)
        # the worker's database thread keeps its connection: closed, or the test database waits for it
        await sync_to_async(connections.close_all, thread_sensitive=True)()
        return claimed

    return asyncio.run(one())


def _due_now() -> None:
    Notification.objects.filter(status="pending").update(next_attempt_at=timezone.now())


def test_each_event_arrives_once_signed_with_the_owners_secret(receiver: Receiver) -> None:
    calc = _run(receiver.url, S.INITIALIZING, S.RUNNING, S.COMPLETE, events=["RUNNING", "COMPLETE"])
    receiver.secret = do_ensure_webhook_secret(calc.owner_id).secret
    assert _pass() == 1 and _pass() == 1 and _pass() == 0
    assert [(r.event["state"], r.verified) for r in receiver.received] == [("RUNNING", True), ("COMPLETE", True)]
    first = receiver.received[0]
    row = Notification.objects.get(id=first.event["delivery"])
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 204)
    assert first.headers["X-Emgapi-Delivery"] == str(row.id) and first.headers["X-Emgapi-Event"] == "RUNNING"
    assert first.event["id"] == str(calc.id) and first.event["kind"] == "calculation"


def test_a_receiver_that_is_down_gets_every_event_in_order_once_it_is_back() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Receiver(port=port)
    calc = _run(down.url, S.INITIALIZING, S.RUNNING, S.EXECUTOR_ERROR, events=["INITIALIZING", "EXECUTOR_ERROR"])
    assert _pass() == 1  # the first event only: the second waits for it
    failed = Notification.objects.get(state="INITIALIZING")
    assert failed.status == "pending" and failed.attempts == 1 and "ConnectError" in failed.error
    _due_now()
    assert _pass() == 1 and Notification.objects.get(state="EXECUTOR_ERROR").attempts == 0
    down.secret = do_ensure_webhook_secret(calc.owner_id).secret
    down.start()
    try:
        _due_now()
        _pass()
        _pass()
    finally:
        down.stop()
    assert [r.event["state"] for r in down.received] == ["INITIALIZING", "EXECUTOR_ERROR"]
    assert all(r.verified for r in down.received)
    assert list(Notification.objects.order_by("sequence").values_list("status", "attempts")) == [
        ("delivered", 3),
        ("delivered", 1),
    ]


def test_a_redirect_is_not_followed_and_a_long_answer_is_read_only_in_part(receiver: Receiver) -> None:
    receiver.answer, receiver.answer_headers = 302, {"Location": "http://169.254.169.254/latest"}
    _run(receiver.url, S.INITIALIZING, S.RUNNING, S.COMPLETE)
    _pass()
    row = Notification.objects.get()
    assert row.status == "pending" and row.last_status_code == 302
    assert row.error == "the receiver answered 302 (a redirect to http://169.254.169.254/latest, not followed)"
    assert len(receiver.received) == 1
    receiver.answer, receiver.answer_headers, receiver.answer_body = 500, {}, b"x" * 100_000
    _due_now()
    _pass()
    row.refresh_from_db()
    assert row.last_status_code == 500 and row.error == "the receiver answered 500: " + "x" * 200


def test_a_url_refused_at_delivery_is_never_sent_and_the_record_says_why(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(receiver.url, S.INITIALIZING, S.RUNNING, S.COMPLETE)
    monkeypatch.setattr(get_settings().notify, "allowed_private_hosts", [])  # an admin took 127.0.0.1 back
    _pass()
    row = Notification.objects.get()
    assert receiver.received == []
    assert row.status == "failed" and row.error.startswith("given up: the URL's host 127.0.0.1, a loopback address")


def test_it_connects_to_the_address_it_checked_not_to_a_second_dns_answer(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.test":  # checked: 127.0.0.1 (allowed); any later answer: elsewhere
            answers.append(host)
            return real("127.0.0.1" if len(answers) == 1 else "10.9.9.9", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    _run(f"http://hooks.example.test:{receiver.port}/hook", S.INITIALIZING, S.RUNNING, S.COMPLETE)
    _pass()
    assert len(answers) == 1  # resolved once, by the check; the connection went to its answer
    assert receiver.received[0].headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert Notification.objects.get().status == "delivered"
    assert UUID(receiver.received[0].event["delivery"])


def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {seconds} s"
        time.sleep(0.1)


@pytest.mark.integration
def test_the_real_worker_sends_one_signed_event_per_state_asked_for_and_catches_up_with_a_receiver_that_was_down(
    live_server: Any, calculation_worker: Any, dispatching: None
) -> None:
    from workflows.tests.test_integration import TERMINAL, Api

    api = Api(live_server.url, user="notified")
    secret = api.http.get("/users/me/webhook-secret").json()["secret"]
    up = Receiver(secret=secret).start()
    with socket.socket() as probe:  # a port nothing listens on yet: the receiver is down
        probe.bind(("127.0.0.1", 0))
        down = Receiver(secret=secret, port=probe.getsockname()[1])
    try:
        text = api.upload("t.txt", b"hello\n")

        def submit(seconds: float, notify: dict[str, Any]) -> str:
            response = api.submit("sleep", {"text": text}, {"seconds": seconds}, backend="local", notify=notify)
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        completes = submit(0, {"url": up.url})
        canceled = submit(30, {"url": up.url})
        later = submit(0.5, {"url": down.url, "events": ["RUNNING", "COMPLETE"]})
        api.wait_for(canceled, {"RUNNING"})
        api.http.post(f"/calculations/{canceled}/cancel")
        for calc in (completes, canceled, later):
            api.wait_for(calc, TERMINAL)
        _until(lambda: len(up.received) >= 2, 10, "both events at the receiver")
        # one event per terminal state asked for, signed with the user's secret
        got = {(r.event["id"], r.event["state"], r.verified) for r in up.received}
        assert got == {(completes, "COMPLETE", True), (canceled, "CANCELED", True)} and len(up.received) == 2

        # the receiver that is down: the run's change is not delayed, and its first event is retried
        pending = api.http.get("/notifications", params={"run": later}).json()["items"]
        assert {item["status"] for item in pending} == {"pending"}
        _until(
            lambda: api.http.get("/notifications", params={"run": later}).json()["items"][-1]["attempts"] >= 2,
            10,
            "retried",
        )
        first = api.http.get("/notifications", params={"run": later}).json()["items"][-1]
        assert first["state"] == "RUNNING" and "ConnectError" in first["error"]
        down.start()  # back after a few seconds: it gets every event, in order
        _until(lambda: len(down.received) >= 2, 10, "both events after the receiver came back")
        assert [(r.event["state"], r.verified) for r in down.received] == [("RUNNING", True), ("COMPLETE", True)]
        time.sleep(0.5)  # and nothing twice
        assert len(down.received) == 2 and len(up.received) == 2
        statuses = [item["status"] for item in api.http.get("/notifications", params={"run": later}).json()["items"]]
        assert statuses == ["delivered", "delivered"]
    finally:
        up.stop()
        down.stop()
