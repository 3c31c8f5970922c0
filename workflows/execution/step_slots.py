"""Where a workflow's steps wait their turn in a worker: for their owner's quota, then for a local slot.

A step waits QUEUED, costing nothing (not even an attempt, should its worker die meanwhile), and
starts its attempt only once it has both:
- **the quota.** A step counts against its owner's active-calculations quota while its attempt is
  in progress (`calculations.actions.submissions.has_step_slot`). The steps of one workflow run that
  wait queue here, in order: only the first asks the database, again when a step of the same owner
  ends in this worker, or every `worker.cancel_check_seconds` (a slot freed elsewhere, or the step
  canceled). A run with no step in progress always gets its next one.
- **a local slot.** At most `workflow.local_step_slots` steps run on the local backend at once in a
  worker (its CPUs). A freed slot goes to the owners waiting in turn (round robin), each owner's
  steps in order: one user's map of thousands cannot hold back another user's single step.
A step's first try goes straight to its start (`do_start_calculation`), which checks the quota
exactly, under the owner's lock: most steps find room, and ask the database once. Only a step
refused there asks `has_step_slot` before each later try; it gives its local slot back meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from calculations.actions.submissions import has_step_slot
from calculations.errors import InvalidTransition, QuotaExceeded
from calculations.models import Calculation
from calculations.states import RunState
from emgapiv2.config import get_settings
from workflows.db import db


class FairSlots:
    """At most `capacity` holders at once; waiters are served one owner at a time, in turn."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._waiting: OrderedDict[Any, deque[asyncio.Future[None]]] = OrderedDict()

    @asynccontextmanager
    async def hold(self, owner: Any) -> AsyncIterator[None]:
        await self._acquire(owner)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, owner: Any) -> None:
        if self.held < self.capacity and not self._waiting:
            self.held += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # granted just as it was cancelled: pass the slot on
            else:
                self._forget(owner, granted)
            raise

    def _forget(self, owner: Any, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None:
            with suppress(ValueError):
                queue.remove(granted)
            if not queue:
                del self._waiting[owner]

    def _release(self) -> None:
        self.held -= 1
        while self.held < self.capacity and self._waiting:
            owner, queue = self._waiting.popitem(last=False)  # the owner whose turn it is...
            granted = queue.popleft()
            if queue:
                self._waiting[owner] = queue  # ...goes to the back of the line
            if not granted.done():
                granted.set_result(None)
                self.held += 1


@dataclass
class _RunQueue:
    owner_id: int
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: the run's steps in order
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0


_run_queues: dict[UUID, _RunQueue] = {}
_local: FairSlots | None = None


@asynccontextmanager
async def turn(
    calculation_id: UUID,
    attempt: int,
    owner_id: int,
    workflow_run_id: UUID,
    backend: str,
    start: Callable[[], Awaitable[Any]],
) -> AsyncIterator[None]:
    """Wait until the step may start (the quota, then a local slot), `start` it, and hold its local
    slot until the block ends. InvalidTransition if the step is no longer QUEUED as `attempt`."""
    queue = _run_queues.setdefault(workflow_run_id, _RunQueue(owner_id))
    queue.waiters += 1
    slot = AsyncExitStack()
    try:
        async with queue.turn:
            hopeful = True  # the first try: the start itself checks the quota
            while True:
                queue.freed.clear()
                if hopeful or await db(_has_slot)(calculation_id, attempt, owner_id, workflow_run_id):
                    hopeful = False
                    await slot.enter_async_context(local_slot(owner_id, backend))
                    try:
                        await start()
                        break
                    except QuotaExceeded:  # taken meanwhile (another run, an API submission)
                        await slot.aclose()  # the local slot goes back to whoever's turn it is
                with suppress(TimeoutError):
                    await asyncio.wait_for(queue.freed.wait(), get_settings().worker.cancel_check_seconds)
    except BaseException:
        await slot.aclose()
        raise
    finally:
        queue.waiters -= 1
        if not queue.waiters:
            _run_queues.pop(workflow_run_id, None)
    try:
        yield
    finally:
        await slot.aclose()


def _has_slot(calculation_id: UUID, attempt: int, owner_id: int, workflow_run_id: UUID) -> bool:
    found = Calculation.objects.filter(id=calculation_id).values_list("state", "attempt").first()
    if found != (RunState.QUEUED, attempt):
        raise InvalidTransition(f"calculation {calculation_id} is no longer QUEUED as attempt {attempt}: {found}")
    return has_step_slot(owner_id, workflow_run_id)


def step_ended(owner_id: int) -> None:
    """A step of this owner ended its attempt here: the owner's waiting runs may try again at once."""
    for queue in _run_queues.values():
        if queue.owner_id == owner_id:
            queue.freed.set()


def local_slot(owner_id: int, backend: str) -> AbstractAsyncContextManager[Any]:
    """Held while a local step stages, runs and stores its outputs (other backends need none)."""
    global _local
    if backend != "local":
        return nullcontext()
    if _local is None:
        _local = FairSlots(get_settings().workflow.local_step_slots or os.cpu_count() or 1)
    return _local.hold(owner_id)
