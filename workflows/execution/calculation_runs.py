"""Running a calculation's current attempt: the single path above the backends, for every program.

`CalculationRun` starts the attempt (a workflow's step first waits for its owner's quota and a local
slot: `step_slots.py`), has the in-flight watcher heartbeat for it, and hands it to the runner its
program names (`calculations/programs.py`): a tool's (`tool_runner.py`) or a TES task's
(`tes_runner.py`). Whatever runs, the working directory, staging, output validation and every state
change happen in this package, through the actions. An exception no runner foresaw ends the attempt
as a platform error, without its text, which a library may have filled with what an engine answered.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any
from uuid import UUID

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.models import Calculation
from calculations.policies import AttemptEnd
from calculations.programs import TES_RUNNER, TOOL_RUNNER, get_program
from calculations.states import TERMINAL_STATES, RunState
from calculations.tools import get_tool
from calculations.workdirs import attempt_dir
from workflows.backends import BackendUnavailable, ExecutionBackend, get_backend
from workflows.db import db
from workflows.execution import step_slots
from workflows.execution.attempts import Attempt, AttemptRunner
from workflows.execution.inflight import get_inflight_watcher
from workflows.execution.tes_runner import TesTaskRunner
from workflows.execution.tool_runner import ToolRunner
from workflows.identity import this_worker

S = RunState


# the runner of each kind of program (`calculations.programs.Program.runner`), for a calculation
RUNNERS: dict[str, Callable[[Calculation], AttemptRunner]] = {
    TOOL_RUNNER: lambda calc: ToolRunner(get_tool(calc.tool)),
    TES_RUNNER: lambda calc: TesTaskRunner(),
}


class CalculationRun:
    """One attempt of one calculation on one backend."""

    def __init__(
        self,
        calculation_id: UUID,
        logger: logging.Logger | Any,
        *,
        backend_for: Callable[[str], ExecutionBackend] = get_backend,
    ) -> None:
        self.calculation_id = calculation_id
        self.logger = logger
        self.backend_for = backend_for

        self.refusal = ""  # why nothing ran, when nothing could (the calculation is gone, or not QUEUED)

    async def execute(self, flow_run_id: UUID | None = None, *, calc: Calculation | None = None) -> RunState | None:
        """Run the current attempt; its final state (None: the calculation does not exist). The row is
        read once, here (or given, as the caller just read it); from then on every change goes through
        a guarded action, which refuses one the row no longer allows."""
        if calc is None:
            calc = await db(Calculation.objects.filter(id=self.calculation_id).first)()
        if calc is None:
            self.refusal = f"calculation {self.calculation_id} does not exist"
            return None
        if calc.state != S.QUEUED:
            if calc.state == S.CANCELED:
                self.refusal = f"calculation {calc.id}: CANCELED before it started"
            elif calc.state in TERMINAL_STATES:
                self.refusal = (
                    f"calculation {calc.id} already ended {calc.state}: nothing to run again "
                    "(submit it anew through the API, with use_cache false, to rerun it)"
                )
            else:
                self.refusal = f"calculation {calc.id} is {calc.state}: another flow run has it"
            self.logger.info(self.refusal)
            return RunState(calc.state)
        attempt = Attempt(calc.id, calc.attempt, calc.backend or "local", self.logger)
        runner = RUNNERS[get_program(calc.tool).runner](calc)
        base = attempt_dir(calc.id, attempt.number)
        start = partial(
            db(actions.do_start_calculation), calc.id, attempt.number, flow_run_id=flow_run_id,
            backend=attempt.backend_name, host=socket.gethostname(), workdir=str(base / runner.workdir),
            worker=this_worker().name,
        )  # fmt: skip
        run_id = calc.workflow_run_id
        slot = AsyncExitStack()  # a step's local slot, from its start to its end
        try:
            if run_id is not None:  # a step waits, QUEUED, for its owner's quota and a local slot
                turn = step_slots.turn(calc.id, attempt.number, calc.owner_id, run_id, attempt.backend_name, start)
                await slot.enter_async_context(turn)
            else:
                await start()
        except InvalidTransition as exc:
            self.logger.info("not starting: %s", exc)
            return await attempt.current_state()
        watcher = get_inflight_watcher()
        watcher.track(calc.id, attempt.number)  # heartbeats from staging the inputs to storing the outputs
        try:
            try:
                attempt.backend = self.backend_for(attempt.backend_name)
            except BackendUnavailable as exc:
                return await attempt.end(AttemptEnd.BACKEND_UNAVAILABLE, str(exc))
            return await runner.run(attempt, calc, base)
        except Exception as exc:
            self.logger.exception("calculation %s failed in the platform", calc.id)
            # the exception's text is not the user's to read: a library may quote what an engine answered
            await attempt.end(AttemptEnd.PLATFORM_ERROR, f"platform error ({type(exc).__name__}); see the worker's log")
            raise
        finally:
            watcher.untrack(calc.id)
            await slot.aclose()
            if run_id is not None:
                step_slots.step_ended(calc.owner_id)
