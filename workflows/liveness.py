"""Each worker's own liveness, apart from any calculation's heartbeat.

A worker registers itself (`WorkerProcess`), heartbeats every `worker.liveness_seconds`, and on the
same beat looks for workers that died: a peer silent for `worker.dead_after_seconds`, or one of its
own predecessors on this machine whose process is gone (found at once, on start). The attempts a
dead worker held are settled as lost (the policy table retries them), their jobs stopped (a local
process group too, when it runs here), and their flow runs ended in Prefect. Two workers that find
the same dead one race harmlessly: only one of them ends its registration, and settles it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from calculations import actions
from calculations.models import Calculation, WorkerProcess
from calculations.states import ATTEMPT_IN_PROGRESS_STATES
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.identity import WorkerIdentity, is_running
from workflows.lost_attempts import LOST_FIELDS, LostAttempt, mark_flow_run_ended, settle, stop_orphan

logger = logging.getLogger(__name__)


def dead_workers(me: WorkerIdentity) -> list[tuple[str, str]]:
    """(name, what happened) of registered workers that are dead (database thread)."""
    silent_since = timezone.now() - timedelta(seconds=get_settings().worker.dead_after_seconds)
    dead: dict[str, str] = {}
    for worker in WorkerProcess.objects.filter(ended_at__isnull=True).exclude(name=me.name):
        if worker.host == me.host and worker.boot_id == me.boot_id and not is_running(worker.pid, worker.start_ticks):
            dead[worker.name] = f"exited (process {worker.pid} is gone)"
        elif worker.heartbeat_at < silent_since:
            silent = (timezone.now() - worker.heartbeat_at).total_seconds()
            dead[worker.name] = f"has been silent for {silent:.0f} s"
    return list(dead.items())


def attempts_held_by(name: str) -> list[LostAttempt]:
    return list(Calculation.objects.filter(worker=name, state__in=ATTEMPT_IN_PROGRESS_STATES).values(*LOST_FIELDS))


async def settle_dead_workers(me: WorkerIdentity) -> int:
    """Settle the attempts of every dead worker this worker finds; return how many."""
    settled = 0
    for name, what in await db(dead_workers)(me):
        if not await db(actions.do_end_worker)(name, f"found dead by {me.name}: it {what}"):
            continue  # another worker got there first
        for calc in await db(attempts_held_by)(name):
            reason = f"worker lost: its worker {name} {what}"
            outcome = await db(settle)(calc, reason, actor=f"worker:{me.name}")
            if outcome != "moved on":
                settled += 1
                await stop_orphan(calc)
                await mark_flow_run_ended(calc["flow_run_id"], reason, canceled=outcome == "canceled")
        logger.warning("worker %s %s: its attempts are settled", name, what)
    return settled
