"""The calculation worker's claim loop: it executes the work pool's flow runs inside this one process.

Prefect's stock process worker starts a Python interpreter per flow run (~4.3 s of CPU here).
This worker instead claims each scheduled flow run (proposing PENDING, which the server grants to
one claimant only) and runs the flow with Prefect's own engine as a coroutine in its event loop:
the run is tracked in Prefect like any other, its logs go to the dashboard, and the only process
per calculation is the tool itself. An ops flow runs the code deployed last: a redeploy is loaded
for the next run, with no restart, and a file that is not the deployed one fails the run in one
line (`workflows/flow_code.py`). Beside the loop run the worker's services, one module each:
its heartbeat into the work pool, its liveness, the sweeper, the reconciler, the watch for
cancels asked of Prefect, and the notifier (webhooks runs asked for).

Run it with `task worker` (python -m workflows.worker).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import prefect.logging.configuration  # noqa: F401  (its logging set-up, before ours: see `serve`)
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.context import AsyncClientContext
from prefect.exceptions import Abort, ObjectNotFound
from prefect.flow_engine import run_flow_async
from prefect.states import Crashed, Failed, Pending
from prefect.types._datetime import now
from prefect.utilities.engine import propose_state

from calculations import actions
from calculations.metrics import PREFECT_API_ERRORS
from emgapiv2.config import get_settings
from workflows import flow_code
from workflows.db import db
from workflows.execution.workflow_runs import begin_workflow_run, end_workflow_run
from workflows.flow_code import FlowCodeError
from workflows.identity import this_worker
from workflows.orchestration.catalogue import WORKFLOW_TAG
from workflows.orchestration.orchestrator import workflow_run_tags
from workflows.orchestration.wakeups import WorkListener
from workflows.orchestration.work_pools import ensure_calculation_work_pool
from workflows.worker import liveness, notifier, pool_heartbeat, prefect_cancels, reconciler, sweeper
from workflows.worker.adoption import adopt_flow_run
from workflows.worker.prefect_patch import (
    cache_default_result_storage,
    disable_suspension_observer,
    read_event_label_limit_once,
)

logger = logging.getLogger("workflows.worker")


@dataclass(frozen=True)
class LoadedFlow:
    """A deployment's flow as this worker loaded it, and what was deployed when it did."""

    entrypoint: str
    version: str | None
    flow: Flow[Any, Any]


class CalculationWorker:
    def __init__(
        self,
        work_pool: str,
        *,
        concurrency: int,
        query_seconds: float,
        heartbeat_seconds: float,
        idle_poll_seconds: float | None = None,
    ) -> None:
        self.work_pool = work_pool
        self.name = f"calculation-worker-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.query_seconds = query_seconds
        self.idle_poll_seconds = idle_poll_seconds or query_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._flows: dict[UUID, LoadedFlow] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a run was launched (wakeups.py), or room was made for one
        self._listener = WorkListener(self._wake_in)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()  # (its loop checks _stopping once woken)

    def _wake_in(self, delay_seconds: float) -> None:
        if delay_seconds <= 0:
            self._wake.set()
        else:  # a retry's backoff: claimed when it is due, not at the next poll
            asyncio.get_running_loop().call_later(delay_seconds, self._wake.set)

    def _forget(self, flow_run_id: UUID, _task: asyncio.Task[None]) -> None:
        if len(self._running) >= self.concurrency:
            self._wake.set()  # it was full: runs may be waiting for this room
        self._running.pop(flow_run_id, None)

    async def _wait_for_work(self) -> None:
        """Until woken (a run launched, room made, stopping) or the poll interval has passed: slow
        while the database's notifications wake this worker, fast where nothing does."""
        interval = self.idle_poll_seconds if self._listener.listening else self.query_seconds
        try:
            await asyncio.wait_for(self._wake.wait(), interval)
        except TimeoutError:
            pass
        self._wake.clear()

    async def run(self) -> None:
        # One client for the worker and every flow run it executes: the flow engine takes the client
        # from this context. Without it each run opens its own (an httpx client with its own TLS
        # context): ~1 MB per waiting run, against ~0.2 MB shared (bench/README.md).
        async with AsyncClientContext.get_or_create() as client_context:
            client = client_context.client
            await ensure_calculation_work_pool(client, self.work_pool)
            me = this_worker()
            await liveness.register(me)
            # its dead predecessors here first (their process is gone: certain), before the reconciler's
            # first sweep could take their calculations' silence for the reason (the liveness pass does
            # this again, harmlessly, and judges other workers' silence once it may)
            try:
                await liveness.settle_dead_workers(me, judge_silence=False)
            except Exception:
                logger.exception("could not settle the attempts of this worker's dead predecessors; retrying")
            services = [
                asyncio.create_task(service)
                for service in (
                    pool_heartbeat.serve(client, self.work_pool, self.name, self.heartbeat_seconds),
                    liveness.serve(me),
                    sweeper.serve(),
                    prefect_cancels.serve(client, lambda: list(self._running)),
                    reconciler.serve(me.name),
                    notifier.serve(me.name),
                    self._listener.serve(),
                )
            ]
            logger.info("worker %s serving work pool %r", self.name, self.work_pool)
            while not self._stopping.is_set():
                await self._claim(client)
                await self._wait_for_work()
            logger.info("worker stopping; waiting for %d running flow runs", len(self._running))
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            for task in services:
                task.cancel()
            await db(actions.do_end_worker)(me.name, "stopped")

    async def _claim(self, client: PrefectClient) -> None:
        """Start the scheduled flow runs this worker has room for."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        try:
            responses = await client.get_scheduled_flow_runs_for_work_pool(self.work_pool, scheduled_before=now("UTC"))
        except Exception:
            PREFECT_API_ERRORS.labels("poll").inc()
            logger.exception("could not poll Prefect; retrying")
            return
        for response in responses[:free]:
            flow_run = response.flow_run
            if flow_run.id not in self._running:
                task = asyncio.create_task(self._execute(client, flow_run))
                self._running[flow_run.id] = task
                task.add_done_callback(functools.partial(self._forget, flow_run.id))

    async def _flow_for(self, client: PrefectClient, flow_run: FlowRun) -> Flow[Any, Any]:
        """The flow a flow run runs: the code deployed now, loaded again when a redeploy changed it.

        Raises FlowCodeError when that code cannot be loaded on this host."""
        if flow_run.deployment_id is None:
            raise FlowCodeError("the flow run has no deployment")
        cached = self._flows.get(flow_run.deployment_id)
        if (
            cached is not None
            and not flow_code.is_hashed(cached.version)
            and cached.version == flow_run.deployment_version
        ):
            return cached.flow  # the platform's own (every calculation's): the worker's code, no question asked
        try:
            deployment = await client.read_deployment(flow_run.deployment_id)
        except ObjectNotFound:
            raise FlowCodeError("its deployment was removed (task undeploy-flow)") from None
        entrypoint, version = deployment.entrypoint, deployment.version
        if cached is not None and (cached.entrypoint, cached.version) == (entrypoint, version):
            if flow_code.is_hashed(version):  # the file may have gone, or changed, since
                await asyncio.to_thread(flow_code.check_loadable, entrypoint, version)
            return cached.flow
        flow = await asyncio.to_thread(flow_code.load_flow, entrypoint, version)
        assert entrypoint is not None  # (load_flow refuses a deployment without one)
        self._flows[flow_run.deployment_id] = LoadedFlow(entrypoint, version, flow)
        if cached is not None:
            logger.info("deployment %s redeployed: loaded %s (%s)", deployment.name, entrypoint, version)
        return flow

    async def _execute(self, client: PrefectClient, flow_run: FlowRun) -> None:
        try:
            state = await propose_state(client, Pending(), flow_run_id=flow_run.id)
        except Abort:
            return  # another worker claimed it, or it was cancelled meanwhile
        except Exception:
            PREFECT_API_ERRORS.labels("claim").inc()
            logger.exception("could not claim flow run %s", flow_run.id)
            return
        if not state.is_pending():
            return
        workflow_run = workflow_run_tags(flow_run.tags)
        if workflow_run is None and WORKFLOW_TAG in flow_run.tags:  # launched from the dashboard
            workflow_run = await adopt_flow_run(client, flow_run)
            if workflow_run is None:
                return
        if workflow_run is not None and not await begin_workflow_run(
            flow_run.id, *workflow_run, worker=this_worker().name
        ):
            return
        try:
            flow = await self._flow_for(client, flow_run)
            final = await run_flow_async(flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
        except FlowCodeError as exc:
            # the flow's own fault, not the platform's: FAILED with the reason, never retried
            logger.warning("flow run %s cannot run: its flow's code cannot be loaded: %s", flow_run.id, exc)
            final = Failed(message=f"the flow's code cannot be loaded: {exc}")
            try:
                await propose_state(client, final, flow_run_id=flow_run.id)
            except Exception:
                logger.exception("could not mark flow run %s failed", flow_run.id)
        except Exception as exc:
            logger.exception("flow run %s crashed in the worker", flow_run.id)
            final = Crashed(message=f"{type(exc).__name__}: {exc}")
            try:
                await propose_state(client, final, flow_run_id=flow_run.id)
            except Exception:
                logger.exception("could not mark flow run %s crashed", flow_run.id)
        if workflow_run is not None:
            await end_workflow_run(flow_run.id, *workflow_run, final)  # (it ends the SDK's context too)


def serve() -> None:
    """Run the worker until SIGINT or SIGTERM (Django is set up: `__main__.py`)."""
    settings = get_settings()
    disable_suspension_observer()
    cache_default_result_storage()
    read_event_label_limit_once()
    # Prefect's logging set-up (done on import, above) already gives the root logger its console
    # handler: a second handler would print every line twice
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("workflows").setLevel(logging.INFO)
    # a workflow's steps are task runs: their INFO lines (job started, finished) cost the Prefect
    # server more than the rest of a small step; warnings and failures still reach the dashboard
    logging.getLogger("prefect.task_runs").setLevel(settings.workflow.step_log_level)
    worker = CalculationWorker(
        settings.prefect.work_pool,
        concurrency=settings.worker.concurrency,
        query_seconds=settings.worker.query_seconds,
        idle_poll_seconds=settings.worker.idle_poll_seconds,
        heartbeat_seconds=settings.worker.heartbeat_seconds,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, worker.stop)
        await worker.run()

    # what the worker holds for good (Django, Prefect, their modules) is left out of the cyclic
    # collector's full passes: each of them stopped the worker for ~0.2 s in a map, half of it here
    gc.freeze()
    asyncio.run(run())
