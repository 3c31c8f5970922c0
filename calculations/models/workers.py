"""Calculation worker processes and their own liveness, apart from any calculation's heartbeat."""

from django.db import models


class WorkerProcess(models.Model):
    """One run of `task worker`: it heartbeats while it lives. A worker that stops heartbeating
    has died (SIGKILL, OOM, its host); its calculations are then settled as lost at once."""

    name = models.CharField(max_length=200, primary_key=True)  # host:pid:boot id prefix
    host = models.CharField(max_length=128)
    pid = models.PositiveIntegerField()
    boot_id = models.CharField(max_length=64)
    start_ticks = models.CharField(max_length=32, blank=True)  # with pid and boot id: this very process
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)  # stopped cleanly, or found dead
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["ended_at", "heartbeat_at"])]

    def __str__(self) -> str:
        return self.name
