"""The notifier: every worker sends the notifications runs asked for (the outbox rows their guarded
transitions inserted, `calculations/actions/notifications.py`), every `notify.poll_seconds`.

- Each pass claims the due rows under a lease (the earliest pending one of each run only: a run's
  later event waits until the earlier one is delivered or given up), so two workers do not send one
  twice, and a worker killed mid-send leaves its rows pending for the next claim after the lease.
  At most `notify.batch` are in flight at once; a pass fills the room that sends which ended left.
- Each POST goes to the address its URL's host resolved to when it was checked, now (loopback,
  private… refused unless allowed: `calculations/notifications.py`), never to a second DNS answer; it
  is signed (X-Emgapi-Signature), follows no redirect, has short timeouts and reads at most
  `notify.response_bytes` of the answer.
- Every attempt's outcome is recorded on the row: delivered on a 2xx, else retried with exponential
  backoff until `notify.give_up_after_hours` after the run's change, then failed, saying why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

import httpx

from calculations.actions import do_claim_notifications, do_give_up_notification, do_record_delivery
from calculations.actions.notifications import Delivery
from calculations.notifications import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    UrlRefused,
    UrlUnresolved,
    check_url,
    sign,
)
from emgapiv2.config import NotifySettings, get_settings
from workflows.db import db
from workflows.worker.periodic import every

logger = logging.getLogger(__name__)


def make_client(settings: NotifySettings) -> httpx.AsyncClient:
    # no proxy from the environment: the connection goes to the very address that was checked
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.timeout_seconds),
        trust_env=False,
        limits=httpx.Limits(max_connections=settings.batch, max_keepalive_connections=10),
    )


async def _read_start(response: httpx.Response, limit: int) -> bytes:
    start = b""
    async for chunk in response.aiter_raw():
        start += chunk
        if len(start) >= limit:
            break
    return start[:limit]


def _describe(status: int, location: str | None, start: bytes) -> str:
    text = f"the receiver answered {status}"
    if location is not None and 300 <= status < 400:
        text += f" (a redirect to {location[:200]}, not followed)"
    shown = start.decode("utf-8", "replace").strip()
    return f"{text}: {shown[:200]}" if shown else text


async def send(client: httpx.AsyncClient, worker: str, delivery: Delivery, settings: NotifySettings) -> None:
    """One attempt of one delivery, its outcome recorded (never raises for the receiver's faults)."""
    try:
        target = await asyncio.to_thread(check_url, delivery.url, settings)  # DNS, off the event loop
    except UrlUnresolved as exc:
        await db(do_record_delivery)(delivery.id, worker, error=str(exc))
        return
    except UrlRefused as exc:  # refused now (a setting changed, or its host now resolves inside): never sent
        await db(do_give_up_notification)(delivery.id, worker, str(exc))
        return
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "emgapi-notifier/1",
        SIGNATURE_HEADER: sign(delivery.secret, delivery.body),
        EVENT_HEADER: delivery.state,
        DELIVERY_HEADER: str(delivery.id),
    }
    extensions = {"sni_hostname": target.host} if target.parts.scheme == "https" else {}
    status: int | None = None
    try:
        async with asyncio.timeout(settings.timeout_seconds * 3):  # a receiver that drips its answer
            request = client.build_request(
                "POST", target.connect_url, content=delivery.body, headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                start = await _read_start(response, settings.response_bytes)
            finally:
                await response.aclose()
        status = response.status_code
        error = "" if 200 <= status < 300 else _describe(status, response.headers.get("location"), start)
    except TimeoutError:
        error = f"no answer within {settings.timeout_seconds * 3:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    outcome = await db(do_record_delivery)(delivery.id, worker, status_code=status, error=error)
    if outcome is not None and outcome != "delivered":
        logger.info("notification %s to %s: %s (%s)", delivery.id, target.host, error, outcome)


class Notifier:
    """One worker's deliveries in flight, at most `notify.batch`: each pass claims as many due ones
    as there is room for, so a slow receiver holds its own deliveries back, not everyone's."""

    def __init__(self, worker: str, client: httpx.AsyncClient, settings: NotifySettings) -> None:
        self.worker, self.client, self.settings = worker, client, settings
        self.in_flight: set[asyncio.Task[None]] = set()

    async def fill(self) -> int:
        """Claim due deliveries for the free room and start sending them; how many were claimed."""
        free = self.settings.batch - len(self.in_flight)
        if free <= 0:
            return 0
        deliveries = await db(do_claim_notifications)(
            self.worker, batch=free, lease_seconds=self.settings.lease_seconds
        )
        for delivery in deliveries:
            task = asyncio.create_task(send(self.client, self.worker, delivery, self.settings))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(deliveries)

    async def drain(self) -> None:
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)


async def deliver_once(worker: str, client: httpx.AsyncClient, settings: NotifySettings | None = None) -> int:
    """Claim the due deliveries, send them and wait for every outcome; how many were claimed."""
    notifier = Notifier(worker, client, settings or get_settings().notify)
    claimed = await notifier.fill()
    await notifier.drain()
    return claimed


async def serve(worker: str) -> NoReturn:
    """A pass every `notify.poll_seconds` (at once again while a pass fills all the room there is)."""
    settings = get_settings().notify
    async with make_client(settings) as client:
        notifier = Notifier(worker, client, settings)

        async def one_pass() -> None:
            while await notifier.fill() and len(notifier.in_flight) < settings.batch:
                pass

        await every(settings.poll_seconds, one_pass, failed="notification pass failed", logger=logger)
