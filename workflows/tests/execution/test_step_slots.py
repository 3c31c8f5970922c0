"""Where steps wait their turn in a worker: local slots go to users in turn, and a run's steps wait
for their owner's quota one at a time, woken when a step of that owner ends."""

from __future__ import annotations

import asyncio
from functools import partial
from uuid import uuid4

import pytest

from calculations.errors import QuotaExceeded
from emgapiv2.config import get_settings
from workflows.execution import step_slots
from workflows.execution.step_slots import FairSlots


def test_a_freed_local_slot_goes_to_the_next_user_not_the_next_waiter() -> None:
    """One user's map queued first must not hold back another user's single step."""
    served: list[str] = []

    async def step(slots: FairSlots, owner: str, name: str) -> None:
        async with slots.hold(owner):
            served.append(name)
            await asyncio.sleep(0.01)

    async def main() -> None:
        slots = FairSlots(1)
        steps = [step(slots, "map-user", f"map-{i}") for i in range(5)]
        await asyncio.gather(*steps, step(slots, "other", "single"))

    asyncio.run(main())
    assert served == ["map-0", "map-1", "single", "map-2", "map-3", "map-4"]


def test_a_waiter_cancelled_in_line_or_just_granted_loses_no_slot() -> None:
    async def main() -> int:
        slots = FairSlots(1)
        release = asyncio.Event()

        async def hold(owner: str) -> None:
            async with slots.hold(owner):
                await release.wait()

        first = asyncio.create_task(hold("a"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(hold(owner)) for owner in ("a", "b")]
        await asyncio.sleep(0)
        waiting[0].cancel()  # gave up while in line
        release.set()  # the first leaves; b is granted
        await asyncio.gather(first, waiting[1], return_exceptions=True)
        async with slots.hold("c"):  # every slot came back
            return slots.held

    assert asyncio.run(main()) == 1


@pytest.fixture
def quota(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the owner's quota has room (the rule itself, against the database, is tested in
    calculations/tests/test_workflow_runs.py); polls slow enough that only a wake-up is quick."""
    room = [False]
    monkeypatch.setattr(get_settings().worker, "cancel_check_seconds", 30.0)
    monkeypatch.setattr(step_slots, "_has_slot", lambda *step: room[0])
    monkeypatch.setattr(step_slots, "_local", FairSlots(1))
    return room


def test_a_runs_steps_wait_for_the_quota_in_turn_and_a_step_ending_wakes_them(quota: list[bool]) -> None:
    run_id, tries, started = uuid4(), [], []

    async def start(name: str) -> None:  # the start checks the quota exactly, under the owner's lock
        tries.append(name)
        if not quota[0]:
            raise QuotaExceeded("the quota is full")
        started.append(name)

    async def step(name: str) -> None:
        async with step_slots.turn(uuid4(), 1, 7, run_id, "container", partial(start, name)):
            pass

    async def main() -> None:
        waiting = [asyncio.create_task(step(f"s{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        assert started == []  # QUEUED: no attempt started while the quota is full
        assert tries == ["s0"]  # the first step tried once; the others wait behind it, asking nothing
        quota[0] = True
        step_slots.step_ended(7)  # a step of the same owner ended in this worker
        await asyncio.wait_for(asyncio.gather(*waiting), 5)

    asyncio.run(main())
    assert started == ["s0", "s1", "s2"]
    assert run_id not in step_slots._run_queues  # nothing kept once no step waits


def test_a_runs_next_step_starts_while_a_job_runs_and_a_slot_is_held_only_by_a_running_job(
    quota: list[bool],
) -> None:
    """One local slot: while step 0's job runs, step 1 starts and waits for the slot (step 2 waits,
    QUEUED, behind it); step 0's slot goes on when its job ends, before its end is recorded."""
    quota[0] = True
    run_id, seen = uuid4(), []
    jobs_end = {name: asyncio.Event() for name in ("s0", "s1", "s2")}

    async def start(name: str) -> None:
        seen.append(f"{name} started")

    async def step(name: str) -> None:
        async with step_slots.turn(uuid4(), 1, 7, run_id, "local", partial(start, name)) as slot:
            await slot.job_slot()
            seen.append(f"{name} job")
            await jobs_end[name].wait()
            await slot.job_done()
            seen.append(f"{name} job ended")
            await asyncio.sleep(0.05)  # its outputs stored, its end recorded: the next job runs meanwhile

    async def main() -> None:
        steps = [asyncio.create_task(step(name)) for name in ("s0", "s1", "s2")]
        await asyncio.sleep(0.05)
        assert seen == ["s0 started", "s0 job", "s1 started"]
        jobs_end["s0"].set()
        await asyncio.sleep(0.01)
        assert seen[3:] == ["s0 job ended", "s1 job", "s2 started"]
        for event in jobs_end.values():
            event.set()
        await asyncio.wait_for(asyncio.gather(*steps), 5)

    asyncio.run(main())
    assert run_id not in step_slots._run_queues


def test_a_step_on_another_backend_lets_its_runs_next_step_start_at_once(quota: list[bool]) -> None:
    """No local slot to wait for: a container or Slurm step does not hold its run's turn while it stages."""
    quota[0] = True
    run_id, started = uuid4(), []
    staged = asyncio.Event()

    async def start(name: str) -> None:
        started.append(name)

    async def step(name: str) -> None:
        async with step_slots.turn(uuid4(), 1, 7, run_id, "slurm", partial(start, name)) as slot:
            await staged.wait()  # staging its inputs
            await slot.job_slot()

    async def main() -> None:
        steps = [asyncio.create_task(step(name)) for name in ("s0", "s1")]
        await asyncio.sleep(0.05)
        assert started == ["s0", "s1"]
        staged.set()
        await asyncio.wait_for(asyncio.gather(*steps), 5)

    asyncio.run(main())
