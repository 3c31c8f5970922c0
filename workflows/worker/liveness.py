"""Each worker's own liveness, apart from any calculation's heartbeat.

A worker registers itself (`WorkerProcess`), heartbeats every `worker.liveness_seconds`, and on the
same beat looks for workers that died: a peer silent for `worker.dead_after_seconds`, or a worker
on this machine whose process is gone (found at once, on start), even one whose registration a peer
had ended while it was only slow, if it holds attempts or workflow runs. The attempts a dead worker
held are settled as lost (the policy table retries them), their jobs stopped (a local process group
too, when it runs here), and their flow runs ended in Prefect. Two workers that find the same dead
one race harmlessly: only one of them ends its registration, and each attempt is settled once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn
from uuid import UUID

from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Now

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.models import Calculation, WorkerProcess, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.states import ACTIVE_STATES, ATTEMPT_IN_PROGRESS_STATES, RunState
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.identity import WorkerIdentity, is_running
from workflows.orchestration.flow_runs import mark_flow_run_ended
from workflows.worker.lost_attempts import LOST_FIELDS, LostAttempt, settle, stop_orphan
from workflows.worker.periodic import every

logger = logging.getLogger(__name__)
STOP_SECONDS = 30


@dataclass(frozen=True)
class DeadWorker:
    name: str
    what: str  # what happened to it
    registered: bool  # its registration is still open (else a peer ended it, and it was never back)


def dead_workers(me: WorkerIdentity, *, judge_silence: bool = True) -> list[DeadWorker]:
    """The workers that are dead (database thread). Silence is measured on the database's clock,
    which wrote every heartbeat: workers' clocks may differ.

    Besides the registered ones: a worker its peers took for dead while it was only slow (under
    load) registers again at its next beat, and meanwhile it may start attempts. Killed before it
    could, its registration stays ended while it holds them: its process being gone says it is dead,
    as for any other (else only the heartbeat sweep would find them, later)."""
    dead_after = timedelta(seconds=get_settings().worker.dead_after_seconds)
    silences = (
        WorkerProcess.objects.filter(ended_at__isnull=True)
        .exclude(name=me.name)
        .annotate(silent=ExpressionWrapper(Now() - F("heartbeat_at"), output_field=DurationField()))
    )
    dead: list[DeadWorker] = []
    for worker in silences:
        if exited := _exited(worker, me):
            dead.append(DeadWorker(worker.name, exited, registered=True))
        elif judge_silence and worker.silent > dead_after:
            dead.append(
                DeadWorker(worker.name, f"has been silent for {worker.silent.total_seconds():.0f} s", registered=True)
            )
    attempts = Calculation.objects.filter(state__in=ATTEMPT_IN_PROGRESS_STATES).exclude(worker="").values("worker")
    runs = WorkflowRun.objects.filter(state__in=ACTIVE_STATES).exclude(worker="").values("worker")
    holders = WorkerProcess.objects.filter(Q(name__in=attempts) | Q(name__in=runs), ended_at__isnull=False)
    for ended in holders.exclude(name=me.name):
        if exited := _exited(ended, me):
            dead.append(DeadWorker(ended.name, exited, registered=False))
    return dead


def _exited(worker: WorkerProcess, me: WorkerIdentity) -> str | None:
    """What happened to `worker`, if it ran on this machine and its process is gone."""
    same_machine = bool(me.boot_id) and worker.host == me.host and worker.boot_id == me.boot_id
    if same_machine and worker.start_ticks and not is_running(worker.pid, worker.start_ticks):
        return f"exited (process {worker.pid} is gone)"
    return None


def lost_reason(worker_name: str, what: str) -> str:
    return f"worker lost: its worker {worker_name} {what}"


def exited_workers(me: WorkerIdentity, names: set[str]) -> dict[str, str]:
    """Of the workers named, those whose process on this machine is gone, and what happened to each
    (database thread): a calculation whose heartbeat stopped because its worker exited is settled
    for that, the more exact reason, whichever sweep finds it first."""
    return {
        worker.name: what for worker in WorkerProcess.objects.filter(name__in=names) if (what := _exited(worker, me))
    }


def attempts_held_by(name: str) -> list[LostAttempt]:
    return list(Calculation.objects.filter(worker=name, state__in=ATTEMPT_IN_PROGRESS_STATES).values(*LOST_FIELDS))


def resume_workflow_runs_of(name: str, reason: str, actor: str) -> list[tuple[UUID, UUID | None, bool]]:
    """The dead worker's workflow runs resume as their next attempt (a new flow run: their COMPLETE
    steps are kept), or end CANCELED if they were canceling. (id, old flow run, canceled) of each."""
    ended = []
    held = WorkflowRun.objects.filter(worker=name, state__in=ACTIVE_STATES).values_list("id", "attempt", "flow_run_id")
    for workflow_run_id, attempt, flow_run_id in held:
        try:
            run = actions.do_end_workflow_run(
                workflow_run_id, attempt, AttemptEnd.WORKER_LOST, message=reason, actor=actor
            )
        except InvalidTransition:
            continue
        ended.append((workflow_run_id, flow_run_id, run.state == RunState.CANCELED))
    return ended


async def settle_dead_workers(me: WorkerIdentity, *, judge_silence: bool = True) -> int:
    """Settle the attempts of every dead worker this worker finds; return how many."""
    settled = 0
    for dead in await db(dead_workers)(me, judge_silence=judge_silence):
        name, what = dead.name, dead.what
        if dead.registered and not await db(actions.do_end_worker)(name, f"found dead by {me.name}: it {what}"):
            continue  # another worker got there first (an ended one's attempts: each settled once, `settle`)
        for calc in await db(attempts_held_by)(name):
            reason = lost_reason(name, what)
            outcome = await db(settle)(calc, reason, actor=f"worker:{me.name}")
            if outcome != "moved on":
                settled += 1
                try:  # bounded: a backend that does not answer must not hold up the rest
                    await asyncio.wait_for(stop_orphan(calc), STOP_SECONDS)
                except TimeoutError:
                    logger.warning("could not stop the job of calculation %s in %s s", calc["id"], STOP_SECONDS)
                await mark_flow_run_ended(calc["flow_run_id"], reason, canceled=outcome == "canceled")
        # after its steps were settled: the resumed attempt finds them QUEUED for their next attempt
        reason = lost_reason(name, what)
        for _, flow_run_id, canceled in await db(resume_workflow_runs_of)(name, reason, f"worker:{me.name}"):
            settled += 1
            await mark_flow_run_ended(flow_run_id, reason, canceled=canceled)
        logger.warning("worker %s %s: its attempts are settled", name, what)
    return settled


async def register(me: WorkerIdentity) -> None:
    """Register this worker (again, if its peers took it for dead), as alive now."""
    await db(actions.do_register_worker)(
        me.name, host=me.host, pid=me.pid, boot_id=me.boot_id, start_ticks=me.start_ticks
    )


class _Liveness:
    def __init__(self, me: WorkerIdentity) -> None:
        self.me = me
        self.in_contact_since: float | None = None  # unbroken database contact since (monotonic)
        self.settling: asyncio.Task[int] | None = None

    async def one_pass(self) -> None:
        try:
            if not await db(actions.do_worker_heartbeat)(self.me.name):
                logger.error("this worker was declared dead (it was silent too long): its attempts were retried")
                await register(self.me)
        except Exception:
            self.in_contact_since = None
            raise
        since = self.in_contact_since = self.in_contact_since or time.monotonic()
        # silence counts only after this worker has seen the database as long as the others had to
        # heartbeat into it: after an outage every peer looks silent, though none died. (A
        # predecessor on this machine whose process is gone is dead at once.) Settling runs beside
        # the heartbeat, never in its way.
        trust_silence = time.monotonic() - since >= get_settings().worker.dead_after_seconds
        if self.settling is None or self.settling.done():
            self.settling = asyncio.create_task(settle_dead_workers(self.me, judge_silence=trust_silence))


async def serve(me: WorkerIdentity) -> NoReturn:
    """This worker's liveness, every `worker.liveness_seconds`, and the dead workers it finds (its
    predecessors here: at once)."""
    liveness = _Liveness(me)
    await every(get_settings().worker.liveness_seconds, liveness.one_pass, failed="liveness pass failed", logger=logger)
