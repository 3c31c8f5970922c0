"""A GA4GH TES task: a Calculation (its state, attempts, inputs, outputs, provenance) with what TES
adds: a name, tags, the executors and paths it asked for, and a log per attempt."""

from django.db import models

from calculations.models.calculations import Calculation


class TesTask(models.Model):
    calculation = models.OneToOneField(Calculation, on_delete=models.CASCADE, primary_key=True, related_name="tes")
    name = models.CharField(max_length=256, blank=True, db_index=True)
    description = models.TextField(blank=True)
    # the task as accepted (calculations.tes.TaskIn, content inputs included), re-validated by the worker
    spec = models.JSONField(default=dict)
    tags = models.JSONField(default=dict)
    # one TES TaskLog per attempt, by attempt number: executors' logs, outputs, system logs
    logs = models.JSONField(default=dict)

    class Meta:
        permissions = [("run_any_image", "Can run any container image in GA4GH TES tasks")]

    def __str__(self) -> str:
        return f"TES task {self.name or self.calculation_id}"


class TesTag(models.Model):
    """A task's tags as rows, so that listing by `tag_key`/`tag_value` is an indexed join."""

    task = models.ForeignKey(TesTask, on_delete=models.CASCADE, related_name="tag_rows")
    key = models.CharField(max_length=256)
    value = models.CharField(max_length=1024, blank=True)

    class Meta:
        indexes = [models.Index(fields=["key", "value"])]
        constraints = [models.UniqueConstraint(fields=["task", "key"], name="one_value_per_tes_tag")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
