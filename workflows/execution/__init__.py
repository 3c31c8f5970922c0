"""Execution: a calculation's attempt on its backend (`calculation_runs.py`, with a runner per
program: `tool_runner.py`, `tes_runner.py`), and a workflow run's side of it (`workflow_runs.py`,
`steps.py`, `pauses.py`), inside the worker's event loop (see workflows/README.md).

The runners are listed here, once, for `CalculationRun` to choose from: they build on its `Attempt`,
so it cannot import them itself."""

from calculations.programs import TES_RUNNER, TOOL_RUNNER
from calculations.tools import get_tool
from workflows.execution.calculation_runs import RUNNERS
from workflows.execution.tes_runner import TesTaskRunner
from workflows.execution.tool_runner import ToolRunner

RUNNERS[TOOL_RUNNER] = lambda calc: ToolRunner(get_tool(calc.tool))
RUNNERS[TES_RUNNER] = lambda calc: TesTaskRunner()
