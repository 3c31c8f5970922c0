"""The calculation worker (`python -m workflows.worker`, `task worker`): it claims the calculation
pool's flow runs and executes them in its own event loop (`claim_loop.py`), and runs the platform's
services beside them, one module each (see workflows/README.md)."""
