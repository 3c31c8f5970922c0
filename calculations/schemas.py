"""API schemas: <Noun>In, <Noun>Out, <Noun>Filters."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.db.models import Count, Q
from ninja import FilterSchema, Schema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from calculations.actors import CancelRequest, cancel_requests
from calculations.errors import InvalidInput
from calculations.models import Calculation, File, Notification, NotificationStatus, UploadState, WorkflowRun
from calculations.pipelines import plan
from calculations.programs import program_names
from calculations.resources import ResourcesIn, RetryIn
from calculations.run_kinds import CALCULATION, WORKFLOW_RUN
from calculations.states import RunState
from calculations.verdicts import Verdict
from calculations.workflow_params import PIPELINE


class ErrorOut(Schema):
    detail: str


class ProblemsOut(Schema):
    """A 422 that lists every problem found, not only the first (a crate's import)."""

    detail: str
    problems: list[str] = Field([], description="Each problem, one sentence each.")


class CrateImportOut(Schema):
    """The run a crate became here (POST /crates): poll `url` until it ended; its `verdict` then says
    whether it reproduced the crate's outputs."""

    kind: Literal["calculation", "workflow-run"]
    id: UUID
    url: str = Field(description="The new run's API URL.")
    state: RunState
    source: str = Field(description="The run the crate records, by its URL where it ran (or the crate's name).")


class FileOut(Schema):
    id: UUID
    name: str
    size: int
    sha256: str
    created_at: datetime
    produced_by: UUID | None = Field(None, description="Calculation that produced this file (outputs only).")
    output_role: str = ""

    @staticmethod
    def resolve_produced_by(file: File) -> UUID | None:
        return file.produced_by_id


FILE_OUT_COLUMNS = ("id", "name", "size", "sha256", "created_at", "produced_by_id", "output_role")  # FileOut's


class UploadIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=1024, description="The file's name.")
    size: int = Field(ge=0, description="Its size in bytes: each part URL is signed for its exact share of it.")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{64}$", description="Its sha256, if known: completing checks the bytes against it."
    )


class UploadPartOut(Schema):
    part_number: int
    size: int = Field(description="Send exactly this many bytes: the URL signs its Content-Length.")
    url: str = Field(description="PUT the part's bytes here (no other header needed); S3 answers its ETag.")


class UploadSummaryOut(Schema):
    """An upload as the list shows it: without part URLs (GET /uploads/{id} signs them anew)."""

    id: UUID
    name: str
    size: int
    sha256: str | None
    state: UploadState
    part_size: int
    expires_at: datetime = Field(description="Complete it before this; then it is aborted, and its URLs stop working.")
    file: UUID | None = Field(description="The file it became, once COMPLETE.")
    error: str = Field(description="Why it FAILED.")
    created_at: datetime

    @staticmethod
    def resolve_sha256(upload: Any) -> str | None:
        return upload.sha256 or None

    @staticmethod
    def resolve_file(upload: Any) -> UUID | None:
        return upload.file_id  # type: ignore[no-any-return]


class UploadOut(UploadSummaryOut):
    """An upload, with where to PUT each part while it is OPEN."""

    parts: list[UploadPartOut] = Field(description="Where to PUT each part, while the upload is OPEN.")

    @staticmethod
    def resolve_parts(upload: Any, context: dict[str, Any]) -> list[UploadPartOut]:
        return context["parts"]  # type: ignore[no-any-return]  # (signed by the view: UploadOut.from_orm)


class UploadFilters(FilterSchema):
    state: UploadState | None = None


class UploadedPartIn(Schema):
    model_config = ConfigDict(extra="forbid")

    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=1024, description="The ETag header S3 answered the part's PUT with.")


class UploadCompleteIn(Schema):
    model_config = ConfigDict(extra="forbid")

    parts: list[UploadedPartIn] | None = Field(
        None, max_length=10_000, description="Each part and its ETag. Unset: the server lists the parts S3 holds."
    )


class InputRoleOut(Schema):
    name: str
    description: str
    formats: list[str]


class OutputRoleOut(Schema):
    name: str
    description: str
    path: str
    format: str
    required: bool
    carries_timestamps: bool = Field(description="Its bytes hold when it was made: a rerun expects it to differ.")


class ResourcesOut(Schema):
    """What a run is given unless it asks otherwise (`resources`), and the most it may ask for here:
    the lower of the tool's maximum and the deployment's. (GPUs also need a backend that has them.)"""

    cpus: int
    memory_mb: int
    time_limit_seconds: int
    gpus: int
    max_cpus: int
    max_memory_mb: int
    max_time_limit_seconds: int
    max_gpus: int


class RecommendationOut(Schema):
    """What a band of input sizes' measured runs suggest (calculations/usage.py)."""

    memory_mb: int = Field(description="The band's p95 peak memory rounded up: 95 % of its runs peaked under it.")
    basis: str = Field(description='In words: "95 % of 24 runs with inputs of 1–10 MB peaked under 310 MB".')
    runs: int
    default_memory_mb: int = Field(
        description="What a request of such inputs that asks for no memory is given on the backends in "
        "usage.defaults_on: memory_mb × EMGAPI_RESOURCES__RECOMMEND_MARGIN, within the floor and the maximum."
    )


class UsageBandOut(Schema):
    """Peak memory (MB) and wall time (s) of the measured runs whose inputs total more than
    inputs_over_mb and at most inputs_up_to_mb (MB = MiB; p50 and p95 are nearest-rank)."""

    inputs_over_mb: int
    inputs_up_to_mb: int | None = Field(description="null: no upper bound.")
    runs: int
    memory_mb_p50: float
    memory_mb_p95: float
    wall_seconds_p50: float | None
    wall_seconds_p95: float | None
    recommendation: RecommendationOut


class UsageOut(Schema):
    """What the tool's last complete runs measured (cache hits aside), by band of input size. Everyone's
    runs are counted, so a band is shown only once it holds min_runs of them: fewer would tell one
    user of another's runs."""

    window: int = Field(description="The figures are of the tool's last this many complete, measured runs.")
    min_runs: int = Field(description="Runs a band needs before it is shown, with its recommendation.")
    defaults_on: list[str] = Field(
        description="Backends where a request that asks for no memory is given its band's default_memory_mb "
        "(empty: EMGAPI_RESOURCES__RECOMMEND_DEFAULTS is off; the tool's memory_mb then)."
    )
    bands: list[UsageBandOut] = Field(description="Bands with min_runs runs or more, smallest inputs first.")


class ToolSummaryOut(Schema):
    name: str
    version: str
    description: str


class ToolOut(ToolSummaryOut):
    params_schema: dict[str, Any]
    inputs: list[InputRoleOut]
    outputs: list[OutputRoleOut]
    resources: ResourcesOut
    usage: UsageOut = Field(description="Measured peak memory and wall time of its runs, and recommendations.")
    backends: list[str] = Field(description="Backends this deployment can run the tool on.")
    default_backend: str | None = Field(description="The backend a submission naming none runs on.")
    image: str | None = Field(description="The tool's container image (container backend, Slurm with containers).")
    nondeterministic: bool = Field(
        description="The same inputs may give other bytes: a rerun whose outputs differ is not a failure."
    )


class NotifyIn(Schema):
    """Where to POST a signed JSON event when the run reaches one of `events` (GET /notifications shows
    each delivery)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="An http(s) URL with a public host (private, loopback and link-local addresses are refused "
        "unless the deployment allows them). Each POST carries X-Emgapi-Signature: sha256=<HMAC-SHA256 of the "
        "body with your webhook secret> (GET /users/me/webhook-secret).",
    )
    events: list[str] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="The states to be told of. Unset: the terminal ones (COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR, "
        "CANCELED).",
    )

    @field_validator("events")
    @classmethod
    def _known_states(cls, events: list[str] | None) -> list[str] | None:
        for state in events or ():
            if state not in RunState.values:
                raise ValueError(f"unknown state {state!r} (known: {', '.join(RunState.values)})")
        return events


class CalculationIn(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelled key is a 422 that names it

    inputs: dict[str, UUID] = Field(description="File id for each input role of the tool.")
    params: dict[str, Any] = Field(default_factory=dict, description="The tool's parameters.")
    use_cache: bool = Field(True, description="Answer from an identical earlier calculation if there is one.")
    backend: str | None = Field(
        None, description="local, container or slurm; one the tool lists. Unset: the tool's default."
    )
    notify: NotifyIn | None = Field(None, description="Tell this URL when the calculation reaches these states.")
    resources: ResourcesIn | None = Field(None, description="CPUs, memory, time and GPUs to give the tool.")
    retry: RetryIn | None = Field(None, description="Whether to retry with more memory or time, and up to what.")


class CalculationOut(Schema):
    id: UUID
    tool: str
    tool_version: str
    state: RunState
    params: dict[str, Any]
    inputs: dict[str, UUID | None] = Field(
        description="File id for each input role (null: you deleted that file since; provenance keeps its sha256)."
    )
    outputs: dict[str, list[UUID]]
    error: str
    attempts: int
    cache_hit: bool = Field(
        description="Answered from (or following) an identical calculation instead of running the tool again."
    )
    cached_from: UUID | None = Field(
        description="That identical calculation, when it is yours (another user's ids are never shown)."
    )
    backend: str
    flow_run_id: UUID | None
    workflow_run: UUID | None = Field(description="The workflow run this calculation is a step of, if any.")
    step: str | None = Field(description="Its step's name in that workflow run.")
    step_index: int | None = Field(description="Which call of that step (a mapped step's element).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    provenance: dict[str, Any]
    resources: dict[str, int] = Field(
        description="What it was granted: cpus, memory_mb, time_limit_seconds, gpus (each attempt's: provenance)."
    )

    @staticmethod
    def resolve_resources(calc: Calculation) -> dict[str, int]:
        granted: dict[str, int] = calc.provenance.get("resources", {})
        return granted

    @staticmethod
    def resolve_workflow_run(calc: Calculation) -> UUID | None:
        return calc.workflow_run_id

    @staticmethod
    def resolve_step(calc: Calculation) -> str | None:
        return calc.step if calc.workflow_run_id else None

    @staticmethod
    def resolve_inputs(calc: Calculation) -> dict[str, UUID | None]:
        return {link.role: link.file_id for link in calc.inputs.all()}

    @staticmethod
    def resolve_outputs(calc: Calculation) -> dict[str, list[UUID]]:
        outputs: dict[str, list[UUID]] = {}
        for file in sorted(calc.output_files.all(), key=lambda f: (f.output_role, f.name)):
            outputs.setdefault(file.output_role, []).append(file.id)
        return outputs

    @staticmethod
    def resolve_attempts(calc: Calculation) -> int:
        return calc.attempt

    @staticmethod
    def resolve_cache_hit(calc: Calculation) -> bool:
        return calc.cached_from_id is not None

    @staticmethod
    def resolve_cached_from(calc: Calculation) -> UUID | None:
        if calc.cached_from_id is None:
            return None
        # the list and detail querysets annotate the owner (one join); a fresh submission has the object
        owner_id = getattr(calc, "cached_from_owner_id", None)
        if owner_id is None and calc.cached_from is not None:
            owner_id = calc.cached_from.owner_id
        return calc.cached_from_id if owner_id == calc.owner_id else None


class CalculationDetailOut(CalculationOut):
    """A calculation as GET /calculations/{id} shows it: with who asked it to stop."""

    canceled_by: str | None = Field(
        description="Who asked it to stop (a username; `worker (…)` or `user (workflow run … canceled)` when its "
        "workflow run stopped it), if anyone did."
    )
    canceled_at: datetime | None = Field(description="When they asked.")
    rerun_of: UUID | None = Field(description="The calculation this one runs again (POST /calculations/{id}/rerun).")
    verdict: Verdict | None = Field(
        description="A rerun that verifies, once it ended: for each output identical (same sha256) or not, and "
        "the outcome: identical, differs (only outputs the tool declares may differ: nondeterministic, or "
        "carrying timestamps), different (an output differs, or is missing or extra) or not reproduced (it did "
        "not COMPLETE). Null for any other calculation, and while it runs."
    )

    @staticmethod
    def resolve_rerun_of(calc: Calculation) -> UUID | None:
        return calc.rerun_of_id

    @staticmethod
    def resolve_verdict(calc: Calculation) -> Verdict | None:
        return Verdict.model_validate(calc.verdict) if calc.verdict else None

    @staticmethod
    def resolve_canceled_by(calc: Calculation) -> str | None:
        request = _cancel_request(calc)
        return request.by if request else None

    @staticmethod
    def resolve_canceled_at(calc: Calculation) -> datetime | None:
        request = _cancel_request(calc)
        return request.at if request else None


class CalculationFilters(FilterSchema):
    state: RunState | None = None
    tool: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="A registered tool's name.")

    @field_validator("tool")
    @classmethod
    def _registered(cls, name: str | None) -> str | None:
        # a misspelled tool would otherwise list nothing, as if there were no such calculations
        if name is not None and name not in (known := program_names()):
            raise ValueError(f"unknown tool {name!r} (known: {', '.join(known)})")
        return name


class WorkflowOut(Schema):
    name: str = Field(description="Launch it with POST /api/v2/workflows/{name}/runs.")
    description: str
    parameters_schema: dict[str, Any] = Field(
        description="JSON schema of its parameters (Prefect's, from the flow's signature); "
        "properties marked x-emgapi-file take one of your file ids."
    )


class WorkflowRunIn(Schema):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="The workflow's parameters.")
    notify: NotifyIn | None = Field(None, description="Tell this URL when the run reaches these states.")


class ResumeIn(Schema):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(default_factory=dict, description="The input the paused run asks for (its form).")


# A plain pydantic model (no docstring: it would be the API docs' description): built by
# `WorkflowRunOut.resolve_steps` alone, it is taken as it is when the response is validated, where
# ninja's Schema would read each of its fields, and each of its files', again through its getters:
# two thirds of a 1,000-step run's GET, which clients poll while they wait for it.
class StepOut(BaseModel):
    name: str
    index: int
    tool: str
    calculation_id: UUID
    state: RunState
    cached_from: UUID | None = Field(description="The identical calculation it was answered from, when yours.")
    started_at: datetime | None
    finished_at: datetime | None
    outputs: list[FileOut] = Field(
        description="Its output files (by role, then name): GET /files/{id}/content downloads each."
    )
    canceled_by: str | None = Field(
        description="Who asked it to stop (a username; `worker (…)` when its run stopped it), if anyone did."
    )
    canceled_at: datetime | None = Field(description="When they asked.")


class PendingStepOut(Schema):
    name: str
    index: int = Field(description="Which element of a mapped step (0 if it is not mapped).")
    tool: str


class WorkflowRunSummaryOut(Schema):
    id: UUID
    workflow: str
    state: RunState
    params: dict[str, Any]
    error: str
    attempts: int = Field(description="Flow runs so far: a run resumed after its worker was lost has several.")
    flow_run_id: UUID | None = Field(description="The current attempt's flow run in Prefect.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @staticmethod
    def resolve_attempts(run: WorkflowRun) -> int:
        return run.attempt


class WorkflowRunOut(WorkflowRunSummaryOut):
    steps: list[StepOut] = Field(description="Its steps, in the order they were created; each is a calculation.")
    pending_steps: list[PendingStepOut] = Field(
        description="Steps its plan holds that were not created yet, in the order they will be (once the run "
        "ended: those it never started). A pipeline's plan knows every step from the start; another workflow's "
        "steps are known only as its flow creates them, so this is empty."
    )
    result: Any = Field(
        None,
        description="What the flow returned (JSON), once COMPLETE; null if it returned nothing, or something "
        "that could not be kept (not JSON, or more than EMGAPI_WORKFLOW__MAX_RESULT_BYTES): `error` then says why.",
    )
    canceled_by: str | None = Field(description="Who asked it to stop (a username), if anyone did.")
    canceled_at: datetime | None = Field(description="When they asked.")
    rerun_of: UUID | None = Field(description="The workflow run this one runs again (POST /workflow-runs/{id}/rerun).")
    verdict: Verdict | None = Field(
        description="A rerun that verifies, once it ended: its steps matched to the original's by (name, index), "
        "each with its outputs' verdict (as a calculation's); the outcome is the worst step's, and a step missing "
        "or extra is `different`. Null for any other run, and while it runs."
    )

    @staticmethod
    def resolve_rerun_of(run: WorkflowRun) -> UUID | None:
        return run.rerun_of_id

    @staticmethod
    def resolve_verdict(run: WorkflowRun) -> Verdict | None:
        return Verdict.model_validate(run.verdict) if run.verdict else None

    @staticmethod
    def resolve_steps(run: WorkflowRun) -> list[StepOut]:
        steps = list(
            run.steps.order_by("created_at", "step", "step_index").values(
                "id", "step", "step_index", "tool", "state", "cached_from_id", "cached_from__owner_id",
                "started_at", "finished_at",
            )
        )  # fmt: skip
        # (built from the database's own values, not validated again: see StepOut)
        outputs: dict[UUID, list[FileOut]] = {}
        files = File.objects.filter(produced_by__workflow_run=run).order_by("output_role", "name", "id")
        for file in files.values(*FILE_OUT_COLUMNS):
            produced_by = file.pop("produced_by_id")
            outputs.setdefault(produced_by, []).append(FileOut.model_construct(produced_by=produced_by, **file))
        canceled = cancel_requests(CALCULATION, [step["id"] for step in steps]) if steps else {}
        return [
            StepOut.model_construct(
                name=step["step"],
                index=step["step_index"] or 0,
                tool=step["tool"],
                calculation_id=step["id"],
                state=RunState(step["state"]),
                cached_from=step["cached_from_id"] if step["cached_from__owner_id"] == run.owner_id else None,
                started_at=step["started_at"],
                finished_at=step["finished_at"],
                outputs=outputs.get(step["id"], []),
                canceled_by=canceled[step["id"]].by if step["id"] in canceled else None,
                canceled_at=canceled[step["id"]].at if step["id"] in canceled else None,
            )
            for step in steps
        ]

    @staticmethod
    def resolve_pending_steps(run: WorkflowRun) -> list[PendingStepOut]:
        if run.workflow != PIPELINE:
            return []
        try:
            planned = plan(run.params)
        except InvalidInput:  # checked when it was submitted; a tool unregistered since plans nothing
            return []
        created = set(run.steps.values_list("step", "step_index"))
        return [
            PendingStepOut(name=step.name, index=index, tool=step.tool)
            for step in planned
            for index in range(step.width or 1)
            if (step.name, index) not in created
        ]

    @staticmethod
    def resolve_canceled_by(run: WorkflowRun) -> str | None:
        request = _cancel_request(run)
        return request.by if request else None

    @staticmethod
    def resolve_canceled_at(run: WorkflowRun) -> datetime | None:
        request = _cancel_request(run)
        return request.at if request else None


class WorkflowRunProgressOut(WorkflowRunSummaryOut):
    """A run's state and how far its steps are, without the steps themselves: what to poll while
    following a run (a 1,000-step run's whole answer is 0.6 MB, and ~90 ms of the server's CPU)."""

    step_states: dict[RunState, int] = Field(
        description="How many of its steps are in each state (only the states some step is in)."
    )
    pending_steps: int = Field(
        description="Steps its plan holds that were not created yet (a pipeline's; 0 for another workflow's)."
    )

    @staticmethod
    def resolve_step_states(run: WorkflowRun) -> dict[str, int]:
        by_state = run.steps.order_by().values("state").annotate(count=Count("id"))
        return dict(by_state.values_list("state", "count"))

    @staticmethod
    def resolve_pending_steps(run: WorkflowRun) -> int:
        return len(WorkflowRunOut.resolve_pending_steps(run))


def _cancel_request(run: WorkflowRun | Calculation) -> CancelRequest | None:
    """Who asked `run` to stop (read once per object shown: the schema asks for two fields of it)."""
    if run.state not in (RunState.CANCELING, RunState.CANCELED):
        return None  # (a run asked to stop is CANCELING until it is CANCELED: no other has such an event)
    if not hasattr(run, "_cancel_request"):
        kind = WORKFLOW_RUN if isinstance(run, WorkflowRun) else CALCULATION
        run._cancel_request = cancel_requests(kind, [run.id]).get(run.id)  # type: ignore[union-attr]
    return run._cancel_request  # type: ignore[union-attr,no-any-return]


class WorkflowRunFilters(FilterSchema):
    state: RunState | None = None
    workflow: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="A workflow's name.")


class NotificationOut(Schema):
    """One notification: its delivery's every attempt is recorded here; one given up says why."""

    id: UUID = Field(description="The delivery id (the X-Emgapi-Delivery header, the body's `delivery`).")
    kind: Literal["calculation", "workflow-run"]
    run: UUID = Field(description="The calculation or workflow run it tells of.")
    state: RunState = Field(description="The state the run reached.")
    url: str
    status: NotificationStatus = Field(
        description="pending (not delivered yet: retried with backoff), delivered (the receiver answered 2xx), "
        "failed (given up: `error` says why)."
    )
    attempts: int
    last_status_code: int | None = Field(description="What the receiver answered last (null: no answer).")
    error: str = Field(description="Why the last attempt failed; once failed, why it was given up.")
    created_at: datetime = Field(description="When the run reached the state.")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next, while pending.")
    delivered_at: datetime | None
    payload: dict[str, Any] | None = Field(
        description="The JSON body sent (every attempt sends the same bytes); null before the first attempt."
    )

    @staticmethod
    def resolve_run(notification: Notification) -> UUID:
        return notification.run_id

    @staticmethod
    def resolve_next_attempt_at(notification: Notification) -> datetime | None:
        return notification.next_attempt_at if notification.status == NotificationStatus.PENDING else None

    @staticmethod
    def resolve_payload(notification: Notification) -> dict[str, Any] | None:
        return json.loads(bytes(notification.payload)) if notification.payload is not None else None


class NotificationFilters(FilterSchema):
    run: UUID | None = Field(None, description="Only those of this calculation or workflow run.")
    status: NotificationStatus | None = None

    def filter_run(self, value: UUID | None) -> Q:
        return Q(run_id=value) if value else Q()


class WebhookSecretOut(Schema):
    secret: str = Field(
        description="Your notifications' signing key: X-Emgapi-Signature is sha256=<hex HMAC-SHA256 of the raw body "
        "with it>. Never shown to anyone else."
    )
    created_at: datetime
    rotated_at: datetime | None = Field(description="When it was last replaced (POST /users/me/webhook-secret).")


class LogsOut(Schema):
    attempt: int
    stdout: str
    stderr: str
    truncated: bool = Field(description="True if only the end of a stream is shown.")


class LogsQuery(Schema):
    stream: Literal["stdout", "stderr"] | None = Field(
        None, description="Read this stream from `offset`, a chunk at a time. Unset: the tails of both."
    )
    offset: int = Field(0, ge=0, le=2**62, description="Byte offset to read `stream` from (past the end: no data).")
    attempt: int | None = Field(None, ge=1, le=10_000, description="Which attempt's logs (default: the current one).")


class LogChunkOut(Schema):
    attempt: int
    stream: Literal["stdout", "stderr"]
    offset: int = Field(description="The byte offset `data` starts at.")
    next_offset: int = Field(description="Ask for this offset next; `data` may hold fewer characters than bytes.")
    data: str = Field(
        description="The stream's bytes from `offset`, as UTF-8 (invalid bytes become U+FFFD). A chunk never ends "
        "inside a multi-byte character, so following the offsets reassembles the text exactly."
    )
    complete: bool = Field(
        description="True once the calculation has ended and `next_offset` is the end of the stream: stop following."
    )


class HealthCheckOut(Schema):
    ok: bool
    detail: str = ""


class HealthOut(Schema):
    status: str
    checks: dict[str, HealthCheckOut]
