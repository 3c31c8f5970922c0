"""The worker learns of new work by a notification, not by asking Prefect 4 times a second.

Whoever creates a flow run (the API's dispatcher, the reconciler, a workflow's remote step) tells the
workers when it is due (empty: now), and each worker's claim loop wakes at that time:
- on PostgreSQL, by `NOTIFY emgapi_work`: every worker, on any host, LISTENs on a connection of its own;
- on SQLite (the embedded default: the API and the worker share one host and one data_dir), by a
  datagram to each worker's socket in data_dir/wakeups/ (0700; a socket whose worker is gone is
  removed by the first sender that finds it so).
While its listener is up, a worker still asks Prefect every `worker.idle_poll_seconds`: the safety net
for a run launched from Prefect's dashboard, or one notified while the listener was reconnecting. While
it is down, the worker polls every `worker.query_seconds`, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from django.db import connection
from django.utils import timezone
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo

from emgapiv2.config import get_settings
from workflows.db import db

logger = logging.getLogger(__name__)

CHANNEL = "emgapi_work"
RECONNECT_SECONDS = 5
# what Django gives psycopg beyond where and who to connect as (its own cursor and adapters)
_NOT_CONNINFO = {"cursor_factory", "context", "prepare_threshold", "server_side_binding"}


def notify_work(due: datetime | None = None) -> None:
    """Tell the workers a flow run is due at `due` (None: now). On PostgreSQL with the caller's
    connection: at its commit, if it is in a transaction."""
    payload = due.isoformat() if due else ""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
        return
    directory = _sockets()
    for path in directory.glob("*.sock") if directory.is_dir() else ():
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            try:
                sender.sendto(payload.encode(), str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its worker is gone
            except BlockingIOError:
                pass  # its queue is full: it has wake-ups enough


def _sockets() -> Path:
    return get_settings().data_dir / "wakeups"


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


def _conninfo() -> str:
    params = {name: value for name, value in connection.get_connection_params().items() if name not in _NOT_CONNINFO}
    # TCP keepalives: a connection a NAT or a network drops without a word ends within ~a minute,
    # instead of leaving the worker polling slowly while it believes it listens
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    return make_conninfo(**(keepalives | params))  # (the deployment's own OPTIONS win)


def _delay(payload: str) -> float:
    """Seconds until a notified run is due: 0 for now, or for a payload that is not a time."""
    if not payload:
        return 0.0
    try:
        due = datetime.fromisoformat(payload)
    except ValueError:
        return 0.0
    return max((due - timezone.now()).total_seconds(), 0.0)


class WorkListener:
    """Calls `wake(delay)` for each flow run notified. `listening` is true while notifications can
    arrive (the claim loop then polls slowly)."""

    def __init__(self, wake: Callable[[float], None]) -> None:
        self._wake = wake
        self.listening = False

    async def serve(self) -> None:
        if await db(_on_postgres)():
            await self._listen(await db(_conninfo)())
        else:
            await self._receive(_sockets())

    async def _listen(self, conninfo: str) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(conninfo, autocommit=True) as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self._wake(0)  # whatever was notified while this was not listening
                    async for notification in listener.notifies():
                        self._wake(_delay(notification.payload))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("the work listener lost its connection; polling Prefect until it is back", exc_info=True)
            finally:
                self.listening = False
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _receive(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}.sock"
        path.unlink(missing_ok=True)  # a dead worker's, of the same pid
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.bind(str(path))
        except OSError:  # (a socket's path is at most 107 bytes)
            receiver.close()
            logger.warning("cannot receive wake-ups at %s; polling Prefect", path, exc_info=True)
            return
        os.chmod(path, 0o600)
        receiver.setblocking(False)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            while True:
                try:
                    payload = receiver.recv(256)
                except BlockingIOError:
                    return
                self._wake(_delay(payload.decode(errors="replace")))

        loop.add_reader(receiver.fileno(), readable)
        self.listening = True
        self._wake(0)  # whatever was launched before this listened
        try:
            await asyncio.Event().wait()  # until the worker stops (cancelled)
        finally:
            self.listening = False
            loop.remove_reader(receiver.fileno())
            receiver.close()
            path.unlink(missing_ok=True)
