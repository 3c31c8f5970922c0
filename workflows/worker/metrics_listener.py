"""The worker's `/metrics`: a small HTTP listener in a thread of its own, bound where the settings say
(`EMGAPI_METRICS__WORKER_HOST`/`_PORT`), for the metrics token only.

A listener rather than pushing to a gateway: Prometheus then sees a worker that is down as `up == 0`
(the worker-down alert), nothing outlives the process that counted it, and the worker needs no
address of Prometheus. It serves this process's counters and histograms (the transitions the worker
makes: RUNNING, an attempt's end, retries; its calls to Prefect) and its CPU and memory; the gauges
read from the database are the API's alone, so that two workers never export them twice."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from calculations.metrics import CONTENT_TYPE, exposition, is_authorized
from emgapiv2.config import get_settings

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # a line per scrape every few seconds would drown the worker's log


def metrics_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """GET /metrics with the token: the exposition; without it: 401; any other path: 404."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: the metrics are at /metrics\n"]
    if not is_authorized(environ.get("HTTP_AUTHORIZATION")):
        start_response(
            "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')]
        )
        return [b"metrics need the bearer token (EMGAPI_METRICS__TOKEN)\n"]
    body = exposition(with_database=False)
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


def start_metrics_listener() -> WSGIServer | None:
    """Serve /metrics in a daemon thread, if a port is set; a port taken is logged, not fatal: the
    worker's calculations matter more than its metrics."""
    settings = get_settings().metrics
    if not settings.worker_port:
        return None
    try:
        server = make_server(
            settings.worker_host, settings.worker_port, metrics_app, server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        logger.error(
            "no /metrics listener on %s:%s (%s): set EMGAPI_METRICS__WORKER_PORT to a free port, or 0",
            settings.worker_host, settings.worker_port, exc,
        )  # fmt: skip
        return None
    threading.Thread(target=server.serve_forever, name="metrics-listener", daemon=True).start()
    logger.info("metrics at http://%s:%s/metrics", settings.worker_host, server.server_port)
    return server
