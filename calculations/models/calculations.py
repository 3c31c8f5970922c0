"""The Calculation row: the single source of truth about a run (design brief §1)."""

import uuid

from django.conf import settings
from django.db import models

from calculations.states import RunState


class Calculation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calculations")
    tool = models.CharField(max_length=64, db_index=True)
    tool_version = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    # indexed by runs_by_state (below), whose first column it is
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    attempt = models.PositiveIntegerField(default=1)
    cache_key = models.CharField(max_length=64, db_index=True)
    use_cache = models.BooleanField(default=True)
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="cache_followers"
    )
    flow_run_id = models.UUIDField(null=True, blank=True, db_index=True)
    backend = models.CharField(max_length=32, blank=True)
    backend_job_id = models.CharField(max_length=128, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Validated by calculations.provenance.Provenance before every write.
    provenance = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker running the current attempt refreshes this; a stale one means the worker is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The worker process (WorkerProcess.name) running the current attempt: if it dies, the attempt is lost.
    worker = models.CharField(max_length=200, blank=True, db_index=True)
    # A retry (a new attempt after a SYSTEM_ERROR) does not start before this: the backoff.
    not_before = models.DateTimeField(null=True, blank=True)
    # A step of a workflow run: its name there, and which call of that name (a map's element).
    workflow_run = models.ForeignKey(
        "calculations.WorkflowRun", null=True, blank=True, on_delete=models.CASCADE, related_name="steps"
    )
    step = models.CharField(max_length=128, blank=True)
    step_index = models.PositiveIntegerField(null=True, blank=True)
    # a rerun (an operator's from the admin, or a user's that verifies) points back at the calculation it repeats
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    # a rerun that verifies (issue 20): the outputs it should reproduce, {role: [{name, sha256, size}]}
    # (from the calculation it repeats, or a crate), and once it ended, whether it did
    # (both validated by calculations.verdicts)
    expected_outputs = models.JSONField(null=True, blank=True)
    verdict = models.JSONField(null=True, blank=True)
    # where to POST an event when it reaches one of the states named ({"url", "events"}; null: nowhere)
    notify = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["cache_key", "state"]),
            # a scrape of /metrics counts runs by state, tool and backend from this index alone (an
            # index-only scan: 100,000 runs in ~25 ms, where reading the rows took ~60); state first,
            # it serves every lookup by state too
            models.Index(fields=["state", "tool", "backend", "created_at"], name="runs_by_state"),
            # a user's quota counts their runs in flight, on every submission and every step: the run
            # column lets it count calculations outside workflow runs without reading a map's queued steps
            models.Index(fields=["owner", "state", "workflow_run"]),
            # a tool's measured runs, newest first: calculations/usage.py reads the last few hundred
            models.Index(
                fields=["tool", "-finished_at"],
                condition=models.Q(state="COMPLETE", cached_from__isnull=True),
                name="measured_runs",
            ),
        ]
        constraints = [
            # a resumed workflow run finds each step it already created by this
            models.UniqueConstraint(
                fields=["workflow_run", "step", "step_index"],
                condition=models.Q(workflow_run__isnull=False),
                name="one_calculation_per_step",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.id} [{self.state}]"


class CalculationInput(models.Model):
    calculation = models.ForeignKey(Calculation, on_delete=models.CASCADE, related_name="inputs")
    role = models.CharField(max_length=64)
    # A user may delete a file once no calculation in flight uses it (the actions refuse before that);
    # a finished calculation then keeps its input's sha256 in its provenance, and the link is null.
    file = models.ForeignKey("calculations.File", null=True, on_delete=models.SET_NULL, related_name="used_by")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["calculation", "role"], name="one_file_per_input_role")]

    def __str__(self) -> str:
        return f"{self.role}: {self.file_id}"


class StateEvent(models.Model):
    """Append-only log of every state change: who, when, from, to, why (of a calculation, or of a
    workflow run: `WorkflowRunEvent`). Each kind's event model adds only its run's foreign key, and
    inherits this Meta (its ordering)."""

    attempt = models.PositiveIntegerField()
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.CharField(max_length=128)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        # no actor: it names an account by id (`user:5`), and the admin shows it by username beside this
        return f"{self.from_state or '∅'} → {self.to_state}"


class CalculationEvent(StateEvent):
    calculation = models.ForeignKey(Calculation, on_delete=models.CASCADE, related_name="events")
