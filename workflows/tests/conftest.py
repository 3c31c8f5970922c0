"""The integration fixtures (Prefect server, calculation worker, engines) are in services.py, a plugin
the root conftest.py registers for every app's tests; its classes are importable from here too."""

from workflows.tests.services import (
    BACKEND_PARAMS,
    PrefectServer,
    ServiceProcess,
    WorkerProcess,
    _postgres_url,
    _stop,
    _wait_http,
)

__all__ = ["BACKEND_PARAMS", "PrefectServer", "ServiceProcess", "WorkerProcess", "_postgres_url", "_stop", "_wait_http"]
