"""Where a workflow's steps wait their turn in a worker: for their owner's quota, then, started, for a
local slot for their job.

A step waits QUEUED, costing nothing (not even an attempt, should its worker die meanwhile), until
it has the first of these; its job then waits for the second:
- **its run's turn and the quota.** A step counts against its owner's active-calculations quota
  while its attempt is in progress (`calculations.actions.submissions.has_step_slot`). The steps of
  one workflow run that wait queue here, in order: only the first asks the database, again when a
  step of the same owner ends in this worker, or every `worker.cancel_check_seconds` (a slot freed
  elsewhere, or the step canceled). A run with no step in progress always gets its next one.
- **then, started and staged, a local slot for its job.** At most `workflow.local_step_slots` jobs
  run on the local backend at once in a worker (its CPUs). The step keeps its run's turn until it
  has one, so the run's next step starts and stages its inputs while the jobs run, and at most one
  step of a run waits started without a slot. The slot is given back when the job ends: the outputs
  are stored and the end recorded outside it. A freed slot goes to the owners waiting in turn (round
  robin), each owner's steps in order: one user's map of thousands cannot hold back another user's
  single step.
A step's first try goes straight to its start (`do_start_calculation`), which checks the quota
exactly, under the owner's lock: most steps find room, and ask the database once. Only a step
refused there asks `has_step_slot` before each later try.
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
LOCAL = "local"  # the backend whose jobs share the worker's CPUs
_local: FairSlots | None = None


class StepSlot:
    """A started step's place: its run's turn until it has a local slot for its job (`job_slot`), so
    that the run's next step starts and stages its inputs meanwhile, and at most one of the run's
    steps waits started without one; then the local slot, until its job has ended (`job_done`)."""

    def __init__(self, queue: _RunQueue, workflow_run_id: UUID, owner_id: int, backend: str) -> None:
        self._queue, self._run_id, self._owner_id, self._backend = queue, workflow_run_id, owner_id, backend
        self._local = AsyncExitStack()
        self._has_turn, self._has_slot = True, False

    async def job_slot(self) -> None:
        """Wait for a local slot (other backends need none), then let the run's next step have its turn."""
        if not self._has_slot:
            await self._local.enter_async_context(local_slot(self._owner_id, self._backend))
            self._has_slot = True
        self.end_turn()

    async def job_done(self) -> None:
        """The job has ended: the local slot goes on (its outputs are stored and its end recorded outside it)."""
        self._has_slot = False
        await self._local.aclose()

    async def close(self) -> None:
        self.end_turn()
        await self._local.aclose()

    def end_turn(self) -> None:
        """The run's next step may start now."""
        if self._has_turn:
            self._has_turn = False
            _leave(self._queue, self._run_id)


def _leave(queue: _RunQueue, workflow_run_id: UUID) -> None:
    queue.turn.release()
    _forget_waiter(queue, workflow_run_id)


def _forget_waiter(queue: _RunQueue, workflow_run_id: UUID) -> None:
    queue.waiters -= 1
    if not queue.waiters:
        _run_queues.pop(workflow_run_id, None)


@asynccontextmanager
async def turn(
    calculation_id: UUID,
    attempt: int,
    owner_id: int,
    workflow_run_id: UUID,
    backend: str,
    start: Callable[[], Awaitable[Any]],
) -> AsyncIterator[StepSlot]:
    """Wait for the run's turn and the owner's quota, `start` the step, and hold the run's turn until
    its job has a local slot (`StepSlot`). InvalidTransition if the step is no longer QUEUED as `attempt`."""
    queue = _run_queues.setdefault(workflow_run_id, _RunQueue(owner_id))
    queue.waiters += 1
    try:
        await queue.turn.acquire()
    except BaseException:
        _forget_waiter(queue, workflow_run_id)
        raise
    try:
        hopeful = True  # the first try: the start itself checks the quota
        while True:
            queue.freed.clear()
            if hopeful or await db(_has_slot)(calculation_id, attempt, owner_id, workflow_run_id):
                hopeful = False
                with suppress(QuotaExceeded):  # taken meanwhile (another run, an API submission)
                    await start()
                    break
            with suppress(TimeoutError):
                await asyncio.wait_for(queue.freed.wait(), get_settings().worker.cancel_check_seconds)
    except BaseException:
        _leave(queue, workflow_run_id)
        raise
    slot = StepSlot(queue, workflow_run_id, owner_id, backend)
    if backend != LOCAL:
        slot.end_turn()  # no local slot to wait for: the run's next step may start at once
    try:
        yield slot
    finally:
        await slot.close()


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
    """Held while a local step's job runs (other backends need none)."""
    global _local
    if backend != LOCAL:
        return nullcontext()
    if _local is None:
        _local = FairSlots(get_settings().workflow.local_step_slots or os.cpu_count() or 1)
    return _local.hold(owner_id)
