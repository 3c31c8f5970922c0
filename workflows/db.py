"""ORM calls from the worker's event loop, robust to a database restart.

The worker is a long-lived process without request boundaries, where Django would replace a
broken connection; so each call here first drops a connection that has failed, and a call that
fails on a lost connection is retried on a new one for up to `RETRY_SECONDS`. Each action is one
transaction, so a failed one left nothing behind and is safe to run again. A healthy connection is
kept for the life of the worker: Django's `close_old_connections` would close it after every call
(CONN_MAX_AGE is 0 for the API), and reconnecting was a fifth of the worker's CPU in a map.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
RETRY_SECONDS = 60.0


def drop_failed_connections() -> None:
    """Close each connection a query failed on, unless it still answers (the next query reconnects)."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


def reconnecting(function: Callable[P, T]) -> Callable[P, T]:
    @wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            drop_failed_connections()
            try:
                return function(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("database unavailable (%s); retrying %s", str(exc).strip(), function.__name__)
                time.sleep(1)

    return call


def db(function: Callable[P, T]) -> Callable[P, Any]:
    """`function` run in asgiref's one shared thread (one connection for the whole process)."""
    return sync_to_async(reconnecting(function), thread_sensitive=True)
