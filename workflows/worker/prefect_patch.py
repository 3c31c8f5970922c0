"""The worker's changes to Prefect's engine, in its own process only (Prefect is pinned, and each
patch fails loudly if an upgrade removes what it replaces: `workflows/tests/worker/test_prefect_patch.py`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any
from uuid import UUID

import prefect.events.schemas.events
import prefect.flow_engine
import prefect.results

# how long the worker trusts the server's default result storage setting (`cache_default_result_storage`)
DEFAULT_RESULT_STORAGE_SECONDS = 60.0


def disable_suspension_observer() -> None:
    """Prefect 3.8's flow engine starts, for every flow run of a deployment, a thread with its own
    event loop and a websocket to the server, only to notice a suspension requested from the UI;
    and it blocks the caller's event loop until that websocket is up. In this worker that is a
    thread and ~1 MB per waiting calculation, and every flow-run start stalls the whole loop
    (1,000 Slurm calculations in flight passed 1.2 GB). Calculations never suspend (they are
    cancelled, through the API), so the observer is switched off here, in this process only."""
    if not hasattr(prefect.flow_engine, "observe_flow_run_suspension"):
        raise RuntimeError("prefect.flow_engine.observe_flow_run_suspension is gone: review this patch")
    prefect.flow_engine.observe_flow_run_suspension = lambda *args, **kwargs: nullcontext()  # type: ignore[assignment]


_READERS = ("_read_server_default_result_storage_block_id", "_aread_server_default_result_storage_block_id")


def cache_default_result_storage(seconds: float = DEFAULT_RESULT_STORAGE_SECONDS) -> None:
    """Prefect 3.8 asks its server for the default result storage twice at the start of every flow
    run (a flow without storage of its own), each time with a new API client, whose TLS context
    alone takes ~15 ms of CPU: 45 % of this worker's CPU for a single calculation (bench/README.md).
    The worker keeps the answer for `seconds`: a default set meanwhile (`prefect experimental
    result-storage set`) applies to flow runs that start after that."""
    if not all(hasattr(prefect.results, name) for name in _READERS):
        raise RuntimeError(f"prefect.results.{' or '.join(_READERS)} is gone: review this patch")
    read_sync: Callable[[], UUID | None] = getattr(prefect.results, _READERS[0])
    read_async: Callable[[], Awaitable[UUID | None]] = getattr(prefect.results, _READERS[1])
    if getattr(read_sync, "kept_for", None) is not None:
        return  # (patched already)
    kept: dict[str, Any] = {}

    def fresh() -> bool:
        return "value" in kept and time.monotonic() - kept["at"] < seconds

    def keep(value: UUID | None) -> UUID | None:
        kept.update(value=value, at=time.monotonic())
        return value

    def kept_sync() -> UUID | None:
        return kept["value"] if fresh() else keep(read_sync())

    async def kept_async() -> UUID | None:
        return kept["value"] if fresh() else keep(await read_async())

    kept_sync.kept_for = kept_async.kept_for = seconds  # type: ignore[attr-defined]
    setattr(prefect.results, _READERS[0], kept_sync)
    setattr(prefect.results, _READERS[1], kept_async)


_LABEL_LIMIT = "PREFECT_EVENTS_MAXIMUM_LABELS_PER_RESOURCE"


class _Fixed:
    """A Prefect setting read once: what `.value()` gave at the worker's start."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def value(self) -> Any:
        return self._value


def read_event_label_limit_once() -> None:
    """Prefect checks each resource of every event it emits against its label limit, reading the
    setting anew each time through the whole settings context: 2.6 % of the worker's CPU in a map
    (a task run's three state events, each with its related resources). Settings do not change in a
    running worker, so it is read once, here."""
    module = prefect.events.schemas.events
    current = getattr(module, _LABEL_LIMIT, None)
    if current is None:
        raise RuntimeError(f"prefect.events.schemas.events.{_LABEL_LIMIT} is gone: review this patch")
    if not isinstance(current, _Fixed):
        setattr(module, _LABEL_LIMIT, _Fixed(current.value()))
