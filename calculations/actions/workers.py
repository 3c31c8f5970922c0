"""Worker processes: registered when they start, heartbeating while they live, ended when they stop
or are found dead. Which attempts a dead worker held is in `Calculation.worker`."""

from __future__ import annotations

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from calculations.models import WorkerProcess


@transaction.atomic
def do_register_worker(name: str, *, host: str, pid: int, boot_id: str, start_ticks: str) -> None:
    # the database's clock, not this host's: peers compare heartbeats against it (their clocks may differ)
    WorkerProcess.objects.update_or_create(
        name=name,
        defaults={"host": host, "pid": pid, "boot_id": boot_id, "start_ticks": start_ticks, "heartbeat_at": Now(),
                  "ended_at": None, "end_reason": ""},
    )  # fmt: skip


def do_worker_heartbeat(name: str) -> bool:
    """The worker is alive; False if it was meanwhile found dead (it must then stop taking work)."""
    return bool(WorkerProcess.objects.filter(name=name, ended_at__isnull=True).update(heartbeat_at=Now()))


def do_end_worker(name: str, reason: str) -> bool:
    """End a worker's registration (it stopped, or was found dead); False if it had ended already."""
    updated = WorkerProcess.objects.filter(name=name, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason[:200]
    )
    return bool(updated)
