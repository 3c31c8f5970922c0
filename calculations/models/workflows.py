"""The WorkflowRun row: the truth about one run of a deployed workflow (design brief §10), as a
Calculation row is about one tool run. Its steps are Calculations that point back to it."""

import uuid

from django.conf import settings
from django.db import models

from calculations.models.calculations import StateEvent
from calculations.states import RunState


class WorkflowRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workflow_runs")
    workflow = models.CharField(max_length=128, db_index=True)  # the deployed flow's name
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED, db_index=True)
    # each attempt is one flow run; a resumed attempt finds its COMPLETE steps and runs only the rest
    attempt = models.PositiveIntegerField(default=1)
    flow_run_id = models.UUIDField(null=True, blank=True, db_index=True)
    # the worker process (WorkerProcess.name) running the current attempt: if it dies, the run resumes
    worker = models.CharField(max_length=200, blank=True, db_index=True)
    error = models.TextField(blank=True)
    # what the flow returned (JSON, bounded by EMGAPI_WORKFLOW__MAX_RESULT_BYTES); null when it returned
    # nothing, or something that could not be stored (the run's error then says why)
    result = models.JSONField(null=True, blank=True)
    # a rerun that verifies (issue 20): the run it repeats, the steps it should reproduce
    # ({"step[index]": {step, index, tool, outputs}}), and once it ended, step by step whether it did
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    expected_steps = models.JSONField(null=True, blank=True)
    verdict = models.JSONField(null=True, blank=True)
    # where to POST an event when it reaches one of the states named ({"url", "events"}; null: nowhere)
    notify = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"{self.workflow} {self.id} [{self.state}]"


class WorkflowRunEvent(StateEvent):
    workflow_run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="events")
