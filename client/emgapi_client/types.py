"""The API's objects as the server sends them (JSON), typed for the reader: what `Client` returns.

Timestamps and ids stay strings, exactly as on the wire, so `--json` output is the server's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

State = Literal[
    "QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "CANCELING", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"
]
TERMINAL_STATES: frozenset[str] = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"})
LogStream = Literal["stdout", "stderr"]

# (bytes transferred so far, total bytes): called as a transfer goes
ProgressCallback = Callable[[int, int], None]


class File(TypedDict):
    id: str
    name: str
    size: int
    sha256: str
    created_at: str
    produced_by: str | None
    output_role: str


class ToolSummary(TypedDict):
    name: str
    version: str
    description: str


class Recommendation(TypedDict):
    memory_mb: int  # the band's p95 peak memory, rounded up
    basis: str  # "95 % of 24 runs with inputs of 1–10 MB peaked under 310 MB"
    runs: int
    default_memory_mb: int  # what a request asking for no memory is given on usage.defaults_on


class UsageBand(TypedDict):
    """The measured runs whose inputs total more than inputs_over_mb and at most inputs_up_to_mb."""

    inputs_over_mb: int
    inputs_up_to_mb: int | None
    runs: int
    memory_mb_p50: float
    memory_mb_p95: float
    wall_seconds_p50: float | None
    wall_seconds_p95: float | None
    recommendation: Recommendation


class ToolUsage(TypedDict):
    """What the tool's last `window` complete runs measured, by band of input size (a band once it
    holds `min_runs` runs); `defaults_on`, the backends where the recommendation is the default."""

    window: int
    min_runs: int
    defaults_on: list[str]
    bands: list[UsageBand]


class Tool(ToolSummary):
    params_schema: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    resources: dict[str, int]
    usage: NotRequired[ToolUsage]  # (a server that measures them)
    backends: list[str]
    default_backend: str | None
    image: str | None


class OutputVerdict(TypedDict):
    """One output of a verifying rerun: identical, differs (declared), expected to differ (timestamps),
    different, missing or extra; both sha256s and sizes."""

    role: str
    name: str
    status: str
    expected_sha256: str | None
    actual_sha256: str | None
    expected_size: int | None
    actual_size: int | None
    note: str


class StepVerdict(TypedDict):
    step: str
    index: int
    tool: str
    outcome: str
    summary: str
    calculation_id: str | None
    outputs: list[OutputVerdict]


class Verdict(TypedDict):
    """Whether a rerun reproduced its original: identical, differs, different or not reproduced."""

    outcome: Literal["identical", "differs", "different", "not reproduced"]
    summary: str
    outputs: list[OutputVerdict]
    steps: list[StepVerdict]  # a workflow run's, step by step


class Calculation(TypedDict):
    id: str
    tool: str
    tool_version: str
    state: State
    params: dict[str, Any]
    inputs: dict[str, str | None]
    outputs: dict[str, list[str]]
    error: str
    attempts: int
    cache_hit: bool
    cached_from: str | None
    backend: str
    flow_run_id: str | None
    workflow_run: str | None
    step: str | None
    step_index: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    provenance: dict[str, Any]
    resources: NotRequired[dict[str, int]]  # what it was granted (a server that has them)
    # GET /calculations/{id} only (and a server that has them): who asked it to stop, and when
    canceled_by: NotRequired[str | None]
    canceled_at: NotRequired[str | None]
    rerun_of: NotRequired[str | None]  # the calculation a rerun repeats
    verdict: NotRequired[Verdict | None]  # a verifying rerun's, once it ended


class Workflow(TypedDict):
    name: str
    description: str
    parameters_schema: dict[str, Any]


class Step(TypedDict):
    name: str
    index: int
    tool: str
    calculation_id: str
    state: State
    cached_from: str | None
    # from a server that has them
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    outputs: NotRequired[list[File]]
    canceled_by: NotRequired[str | None]
    canceled_at: NotRequired[str | None]


class PendingStep(TypedDict):
    """A step the run's plan holds that was not created yet (a pipeline knows all of its steps)."""

    name: str
    index: int
    tool: str


class WorkflowRunSummary(TypedDict):
    id: str
    workflow: str
    state: State
    params: dict[str, Any]
    error: str
    attempts: int
    flow_run_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class WorkflowRun(WorkflowRunSummary):
    steps: list[Step]
    # from a server that has them
    pending_steps: NotRequired[list[PendingStep]]
    result: NotRequired[Any]  # what the flow returned, once COMPLETE
    canceled_by: NotRequired[str | None]
    canceled_at: NotRequired[str | None]
    rerun_of: NotRequired[str | None]  # the workflow run a rerun repeats
    verdict: NotRequired[Verdict | None]  # a verifying rerun's, once it ended, step by step


class WorkflowRunProgress(WorkflowRunSummary):
    """A run without its steps (GET /workflow-runs/{id}/progress): what a wait polls."""

    step_states: dict[State, int]  # how many of its steps are in each state
    pending_steps: int  # steps its plan has yet to create (a pipeline's)


class Resources(TypedDict, total=False):
    """What a calculation asks for; each one left out is the tool's own (GET /tools/{name} shows them
    and the tool's maxima). Above the tool's or the deployment's maximum is a 422 naming it."""

    cpus: int
    memory_mb: int
    time_limit_seconds: int
    gpus: int


class Retry(TypedDict, total=False):
    """Whether an attempt killed for exceeding its memory (time limit) is retried with twice as much
    (the deployment's default: yes), and the most a retry may be given."""

    on_oom: bool
    on_time_limit: bool
    max_memory_mb: int
    max_time_limit_seconds: int


class Notify(TypedDict):
    """What a run asks to be told: a signed JSON event POSTed to `url` when it reaches one of `events`
    (default: the terminal states)."""

    url: str
    events: NotRequired[list[State]]


class Notification(TypedDict):
    """One notification (GET /notifications): its delivery's record; one given up says why in `error`."""

    id: str  # the delivery id (the X-Emgapi-Delivery header)
    kind: Literal["calculation", "workflow-run"]
    run: str
    state: State
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    error: str
    created_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    payload: dict[str, Any] | None  # the body sent, once tried


class WebhookSecret(TypedDict):
    """The key your notifications are signed with: X-Emgapi-Signature is sha256=<hex HMAC-SHA256 of the body>."""

    secret: str
    created_at: str
    rotated_at: str | None


class CrateImport(TypedDict):
    """The run a crate became (POST /crates): poll it; once it ended, its verdict says whether it
    reproduced the crate's outputs."""

    kind: Literal["calculation", "workflow-run"]
    id: str
    url: str
    state: State
    source: str  # the run the crate records, by its URL where it ran


@dataclass(frozen=True)
class SavedOutput:
    """A step's output downloaded by `Client.download_run_outputs`."""

    step: str
    index: int
    role: str
    path: Path


class Logs(TypedDict):
    """The ends of both streams (`GET /calculations/{id}/logs`)."""

    attempt: int
    stdout: str
    stderr: str
    truncated: bool


class LogChunk(TypedDict):
    """One stream from a byte offset (`GET /calculations/{id}/logs?stream=…&offset=…`)."""

    attempt: int
    stream: LogStream
    offset: int
    next_offset: int
    data: str
    complete: bool
