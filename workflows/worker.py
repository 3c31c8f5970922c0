"""The calculation worker: executes the work pool's flow runs inside this one process.

Prefect's stock process worker starts a Python interpreter per flow run (~4.3 s of CPU here).
This worker instead claims each scheduled flow run (proposing PENDING, which the server grants to
one claimant only) and runs the flow with Prefect's own engine as a coroutine in its event loop:
the run is tracked in Prefect like any other, its logs go to the dashboard, and the only process
per calculation is the tool itself. It heartbeats into the work pool so operators see it.

Run it with `task worker` (python -m workflows.worker).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

    from workflows.identity import WorkerIdentity

logger = logging.getLogger("workflows.worker")


def disable_suspension_observer() -> None:
    """Prefect 3.8's flow engine starts, for every flow run of a deployment, a thread with its own
    event loop and a websocket to the server, only to notice a suspension requested from the UI;
    and it blocks the caller's event loop until that websocket is up. In this worker that is a
    thread and ~1 MB per waiting calculation, and every flow-run start stalls the whole loop
    (1,000 Slurm calculations in flight passed 1.2 GB). Calculations never suspend (they are
    cancelled, through the API), so the observer is switched off here, in this process only."""
    from contextlib import nullcontext

    import prefect.flow_engine

    if not hasattr(prefect.flow_engine, "observe_flow_run_suspension"):
        raise RuntimeError("prefect.flow_engine.observe_flow_run_suspension is gone: review this patch")
    prefect.flow_engine.observe_flow_run_suspension = lambda *args, **kwargs: nullcontext()  # type: ignore[assignment]


class CalculationWorker:
    def __init__(self, work_pool: str, *, concurrency: int, query_seconds: float, heartbeat_seconds: float) -> None:
        self.work_pool = work_pool
        self.name = f"calculation-worker-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.query_seconds = query_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._flows: dict[UUID, Flow[Any, Any]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _forget(self, flow_run_id: UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(flow_run_id, None)

    async def run(self) -> None:
        from prefect.context import AsyncClientContext
        from prefect.types._datetime import now

        from workflows.orchestration.work_pools import ensure_calculation_work_pool

        # One client for the worker and every flow run it executes: the flow engine takes the client
        # from this context. Without it each run opens its own (an httpx client with its own TLS
        # context): ~1 MB per waiting run, against ~0.2 MB shared (bench/README.md).
        async with AsyncClientContext.get_or_create() as client_context:
            client = client_context.client
            await ensure_calculation_work_pool(client, self.work_pool)
            # (imported here: this module is imported before Django is set up)
            from calculations import actions
            from workflows.db import db
            from workflows.identity import this_worker

            me = this_worker()
            await db(actions.do_register_worker)(
                me.name, host=me.host, pid=me.pid, boot_id=me.boot_id, start_ticks=me.start_ticks
            )
            heartbeat = asyncio.create_task(self._heartbeat(client))
            # its own liveness, and the dead workers it finds (its predecessors here: at once)
            liveness = asyncio.create_task(self._liveness(me))
            sweeping = asyncio.create_task(self._sweep())
            cancels = asyncio.create_task(self._watch_prefect_cancels(client))
            reconciling = asyncio.create_task(self._reconcile(me.name))
            logger.info("worker %s serving work pool %r", self.name, self.work_pool)
            while not self._stopping.is_set():
                free = self.concurrency - len(self._running)
                if free > 0:
                    try:
                        responses = await client.get_scheduled_flow_runs_for_work_pool(
                            self.work_pool, scheduled_before=now("UTC")
                        )
                    except Exception:
                        logger.exception("could not poll Prefect; retrying")
                        responses = []
                    for response in responses[:free]:
                        flow_run = response.flow_run
                        if flow_run.id not in self._running:
                            task = asyncio.create_task(self._execute(client, flow_run))
                            self._running[flow_run.id] = task
                            task.add_done_callback(functools.partial(self._forget, flow_run.id))
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.query_seconds)
                except TimeoutError:
                    pass
            logger.info("worker stopping; waiting for %d running flow runs", len(self._running))
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            for task in (heartbeat, liveness, sweeping, cancels, reconciling):
                task.cancel()
            await db(actions.do_end_worker)(me.name, "stopped")

    async def _heartbeat(self, client: PrefectClient) -> None:
        while True:
            try:
                # (Prefect takes whole seconds)
                await client.send_worker_heartbeat(self.work_pool, self.name, max(1, round(self.heartbeat_seconds)))
            except Exception:
                logger.warning("worker heartbeat failed", exc_info=True)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _liveness(self, me: WorkerIdentity) -> None:
        from calculations import actions
        from emgapiv2.config import get_settings
        from workflows.db import db
        from workflows.liveness import settle_dead_workers

        settings = get_settings().worker
        in_contact_since: float | None = None  # unbroken database contact since (monotonic)
        settling: asyncio.Task[int] | None = None
        while True:
            try:
                if not await db(actions.do_worker_heartbeat)(me.name):
                    logger.error("this worker was declared dead (it was silent too long): its attempts were retried")
                    await db(actions.do_register_worker)(
                        me.name, host=me.host, pid=me.pid, boot_id=me.boot_id, start_ticks=me.start_ticks
                    )
                in_contact_since = in_contact_since or time.monotonic()
                # silence counts only after this worker has seen the database as long as the others
                # had to heartbeat into it: after an outage every peer looks silent, though none died.
                # (A predecessor on this machine whose process is gone is dead at once.) Settling
                # runs beside the heartbeat, never in its way.
                trust_silence = time.monotonic() - in_contact_since >= settings.dead_after_seconds
                if settling is None or settling.done():
                    settling = asyncio.create_task(settle_dead_workers(me, judge_silence=trust_silence))
            except Exception:
                in_contact_since = None
                logger.exception("liveness pass failed; retrying")
            await asyncio.sleep(settings.liveness_seconds)

    async def _watch_prefect_cancels(self, client: PrefectClient) -> None:
        """Cancels asked of Prefect (the dashboard) for the flow runs this worker runs: one query for
        all of them every `worker.cancel_check_seconds` (workflows/prefect_cancels.py)."""
        from emgapiv2.config import get_settings
        from workflows.prefect_cancels import honour_prefect_cancels

        interval = get_settings().worker.cancel_check_seconds
        seen: set[UUID] = set()
        while True:
            try:
                if self._running:
                    await honour_prefect_cancels(client, list(self._running), seen)
                seen &= set(self._running)
            except Exception:
                logger.warning("could not check Prefect for cancelled flow runs; retrying", exc_info=True)
            await asyncio.sleep(interval)

    async def _reconcile(self, name: str) -> None:
        """The reconciler, as a service of this worker: no flow run every interval (thousands a day
        on the Runs page); a Prefect event, and a log line, only when it acted."""
        from prefect.events import emit_event

        from emgapiv2.config import get_settings
        from workflows.flows.reconcile_calculations import reconcile_once

        interval = get_settings().reconciler.interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                counts = await reconcile_once()
            except Exception:
                logger.exception("reconciling failed; retrying")
                continue
            acted = {what: count for what, count in counts.items() if count}
            if acted:
                logger.info("reconciled: %s", acted)
                emit_event(
                    event="emgapi.reconciler.acted",
                    resource={"prefect.resource.id": f"emgapi.worker.{name}", "prefect.resource.name": name},
                    payload=acted,
                )

    async def _sweep(self) -> None:
        from emgapiv2.config import get_settings
        from workflows.sweeper import sweep_once

        interval = get_settings().sweeper.interval_seconds
        while True:
            try:
                counts = await sweep_once()
                if counts.any():
                    logger.info("swept: %s", counts)
            except Exception:
                logger.exception("sweep failed; retrying")
            await asyncio.sleep(interval)

    async def _flow_for(self, client: PrefectClient, deployment_id: UUID) -> Flow[Any, Any]:
        from prefect.flows import load_flow_from_entrypoint

        if deployment_id not in self._flows:
            deployment = await client.read_deployment(deployment_id)
            if not deployment.entrypoint:
                raise RuntimeError(f"deployment {deployment_id} has no entrypoint")
            self._flows[deployment_id] = load_flow_from_entrypoint(deployment.entrypoint)
        return self._flows[deployment_id]

    async def _execute(self, client: PrefectClient, flow_run: FlowRun) -> None:
        from prefect.exceptions import Abort
        from prefect.flow_engine import run_flow_async
        from prefect.states import Crashed, Pending
        from prefect.utilities.engine import propose_state

        try:
            state = await propose_state(client, Pending(), flow_run_id=flow_run.id)
        except Abort:
            return  # another worker claimed it, or it was cancelled meanwhile
        except Exception:
            logger.exception("could not claim flow run %s", flow_run.id)
            return
        if not state.is_pending():
            return
        from workflows.execution.workflow_runs import begin_workflow_run, end_workflow_run
        from workflows.identity import this_worker
        from workflows.orchestration.catalogue import WORKFLOW_TAG
        from workflows.orchestration.flow_runs import workflow_run_tags

        workflow_run = workflow_run_tags(flow_run.tags)
        if workflow_run is None and WORKFLOW_TAG in flow_run.tags:  # launched from the dashboard
            workflow_run = await self._adopt(client, flow_run)
            if workflow_run is None:
                return
        if workflow_run is not None and not await begin_workflow_run(
            flow_run.id, *workflow_run, worker=this_worker().name
        ):
            return
        try:
            if flow_run.deployment_id is None:
                raise RuntimeError("flow run has no deployment")
            flow = await self._flow_for(client, flow_run.deployment_id)
            final = await run_flow_async(flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
        except Exception as exc:
            logger.exception("flow run %s crashed in the worker", flow_run.id)
            final = Crashed(message=f"{type(exc).__name__}: {exc}")
            try:
                await propose_state(client, final, flow_run_id=flow_run.id)
            except Exception:
                logger.exception("could not mark flow run %s crashed", flow_run.id)
        if workflow_run is not None:
            await end_workflow_run(flow_run.id, *workflow_run, final)  # (it ends the SDK's context too)

    async def _adopt(self, client: PrefectClient, flow_run: FlowRun) -> tuple[UUID, int] | None:
        """A workflow's flow run an operator started in the dashboard: a workflow run of the operator
        account (None, and the flow run failed saying why, if its quota refuses it)."""
        from prefect.states import Failed
        from prefect.utilities.engine import propose_state

        from calculations import actions
        from calculations.errors import QuotaExceeded
        from emgapiv2.config import get_settings
        from workflows.db import db

        deployment = await client.read_deployment(flow_run.deployment_id) if flow_run.deployment_id else None
        workflow = deployment.name if deployment else flow_run.name
        try:
            run = await db(actions.do_adopt_flow_run)(
                get_settings().workflow.operator_username, workflow, flow_run.parameters, flow_run.id
            )
        except QuotaExceeded as exc:
            await propose_state(client, Failed(message=f"not started: {exc}"), flow_run_id=flow_run.id, force=True)
            return None
        return run.id, run.attempt


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    from emgapiv2.config import get_settings

    settings = get_settings()
    disable_suspension_observer()
    # Prefect's logging set-up (done on import) already gives the root logger its console handler;
    # a second handler would print every line twice
    import prefect.logging.configuration  # noqa: F401

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("workflows").setLevel(logging.INFO)
    # a workflow's steps are task runs: their INFO lines (job started, finished) cost the Prefect
    # server more than the rest of a small step; warnings and failures still reach the dashboard
    logging.getLogger("prefect.task_runs").setLevel(settings.workflow.step_log_level)
    worker = CalculationWorker(
        settings.prefect.work_pool,
        concurrency=settings.worker.concurrency,
        query_seconds=settings.worker.query_seconds,
        heartbeat_seconds=settings.worker.heartbeat_seconds,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, worker.stop)
        await worker.run()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
