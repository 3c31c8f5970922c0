"""Settings for the test suite: the real settings, with test defaults set first.

Test defaults: a throwaway data dir, the test-only tools, no dispatch to Prefect (integration
tests switch it on), and a Prefect URL on a free port where the integration fixtures start a server.
"""

import atexit
import os
import secrets
import shutil
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One data dir per test process, removed at its end. pytest-xdist's workers inherit the environment of
# the controller, which made one of its own here: a worker makes its own.
_process = os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("EMGAPI_TEST_DATA_DIR_OF", _process) != _process:
    del os.environ["EMGAPI_DATA_DIR"]
if "EMGAPI_DATA_DIR" not in os.environ:
    os.environ["EMGAPI_DATA_DIR"] = _data_dir = tempfile.mkdtemp(prefix="emgapi-test-")
    os.environ["EMGAPI_TEST_DATA_DIR_OF"] = _process
    atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
# test speeds and switches; the environment may set others
_test_defaults = {
    "EMGAPI_TOOL_PACKAGES": '["tools", "workflows.tests.tools"]',
    "EMGAPI_PREFECT__DISPATCH": "off",
    "EMGAPI_WORKER__KILL_GRACE_SECONDS": "2",
    "EMGAPI_WORKER__CANCEL_CHECK_SECONDS": "0.5",
    "EMGAPI_EXECUTION__ENABLED": '["local", "container", "slurm"]',
    "EMGAPI_SLURM__POLL_SECONDS": "0.5",
    "EMGAPI_WORKER__HEARTBEAT_SECONDS": "0.5",
    "EMGAPI_RECONCILER__STALE_AFTER_SECONDS": "3",
    "EMGAPI_WORKER__LIVENESS_SECONDS": "0.5",
    "EMGAPI_WORKER__DEAD_AFTER_SECONDS": "3",
    "EMGAPI_RETRY__BACKOFF_SECONDS": "0.5",
    "EMGAPI_CONTAINER__POLL_SECONDS": "5",
    # notifications: the tests' receivers listen on 127.0.0.1 (allowed explicitly), and retry fast
    "EMGAPI_NOTIFY__ALLOWED_PRIVATE_HOSTS": '["127.0.0.1"]',
    "EMGAPI_NOTIFY__POLL_SECONDS": "0.2",
    "EMGAPI_NOTIFY__BACKOFF_SECONDS": "0.5",
    "EMGAPI_NOTIFY__MAX_BACKOFF_SECONDS": "1",
    "EMGAPI_NOTIFY__TIMEOUT_SECONDS": "2",
    # the API reads the list of deployed workflows afresh: a test that deploys a flow sees it at once
    "EMGAPI_WORKFLOW__DEPLOYMENTS_CACHE_SECONDS": "0",
    # no worker /metrics listener on the default port (sessions run side by side); the session's worker gets one
    "EMGAPI_METRICS__WORKER_PORT": "0",
}
for _name, _value in _test_defaults.items():
    os.environ.setdefault(_name, _value)
os.environ["PREFECT_API_URL"] = os.environ["EMGAPI_PREFECT__API_URL"] = f"http://127.0.0.1:{_free_port()}/api"
# the test Prefect server needs credentials too (workflows/tests/services.py gives it these)
os.environ["PREFECT_API_AUTH_STRING"] = f"emgapi-test:{secrets.token_urlsafe(24)}"
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "0")

from emgapiv2.settings import *  # noqa: E402, F403
