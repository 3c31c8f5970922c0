"""Execution: a calculation's attempt on its backend (`calculation_runs.py`, with a runner per
program: `tool_runner.py`, `tes_runner.py`), and a workflow run's side of it (`workflow_runs.py`,
`steps.py`, `pauses.py`), inside the worker's event loop (see workflows/README.md)."""
