"""The TES 1.1 objects, as the spec names and types them (a client such as py-tes refuses unknown
fields in what it reads, so responses carry exactly these)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class FileType(StrEnum):
    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


class TesState(StrEnum):
    """Every state TES 1.1 names (a task here is never UNKNOWN, PAUSED or PREEMPTED)."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"


class View(StrEnum):
    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


TagKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
TagValue = Annotated[str, StringConstraints(max_length=1024)]


class _In(BaseModel):
    # a misspelled field is an error, never silently dropped; infinities cannot be stored as JSON
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class InputIn(_In):
    name: str | None = Field(None, max_length=256)
    description: str | None = None
    url: str | None = Field(
        None,
        description="emgapi://files/<id>, this API's file URL (…/api/v2/files/<id>[/content]), or s3://bucket/key "
        "(buckets the deployment allows). Either url or content.",
    )
    path: str = Field(description="Absolute path in the container where the input is placed.", max_length=1024)
    type: FileType = FileType.FILE
    content: str | None = Field(None, description="The file's content, inline (small files only).")
    streamable: bool | None = None


class OutputIn(_In):
    name: str | None = Field(
        None, max_length=256, description="A plain file name (no '/', not starting with '.' or '-'): the output's role."
    )
    description: str | None = None
    url: str | None = Field(
        None,
        description="Empty, or a plain relative name: the output is stored as your file under that name (else the "
        "path's base name). The task's logs give each stored file's URL.",
    )
    path: str = Field(
        description="Absolute path in the container; may hold wildcards (*, ?, [..]) with path_prefix.",
        max_length=1024,
    )
    path_prefix: str | None = Field(None, description="With wildcards: the part of `path` removed to name each file.")
    type: FileType = FileType.FILE


class ResourcesIn(_In):
    cpu_cores: int | None = Field(None, ge=1)
    preemptible: bool | None = None
    ram_gb: float | None = Field(None, gt=0)
    disk_gb: float | None = Field(None, ge=0)
    zones: list[str] | None = None
    backend_parameters: dict[str, str] | None = None
    backend_parameters_strict: bool | None = False


class ExecutorIn(_In):
    image: str = Field(
        min_length=1, max_length=512, description="An image reference: [registry[:port]/]name[:tag][@digest]."
    )
    command: list[str] = Field(min_length=1)
    workdir: str | None = Field(None, max_length=1024)
    stdin: str | None = Field(None, max_length=1024)
    stdout: str | None = Field(None, max_length=1024)
    stderr: str | None = Field(None, max_length=1024)
    env: dict[str, str] | None = Field(
        None, description="Variable names: a letter or '_', then letters, digits or '_' (calculations/names.py)."
    )
    ignore_error: bool | None = False


class TaskIn(_In):
    # output-only fields a client may echo back (py-tes sends what it holds): accepted and ignored
    id: str | None = None
    state: str | None = None
    logs: list[dict[str, Any]] | None = None
    creation_time: str | None = None

    name: str | None = Field(None, max_length=256)
    description: str | None = None
    inputs: list[InputIn] | None = None
    outputs: list[OutputIn] | None = None
    resources: ResourcesIn | None = None
    executors: list[ExecutorIn] = Field(min_length=1)
    volumes: list[str] | None = None
    tags: dict[TagKey, TagValue] | None = None

    def stored(self) -> dict[str, Any]:
        """What the platform keeps and re-validates in the worker: the request without output-only fields."""
        return self.model_dump(mode="json", exclude={"id", "state", "logs", "creation_time"}, exclude_none=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateTaskOut(_Out):
    id: str


class ExecutorLogOut(_Out):
    start_time: datetime | None = None
    end_time: datetime | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int


class OutputFileLogOut(_Out):
    url: str
    path: str
    size_bytes: str  # TES 1.1 sends sizes as strings (int64 in JSON)


class TaskLogOut(_Out):
    logs: list[ExecutorLogOut]
    metadata: dict[str, str] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    outputs: list[OutputFileLogOut]
    system_logs: list[str] | None = None


class TaskOut(_Out):
    id: str
    state: str
    name: str | None = None
    description: str | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    resources: dict[str, Any] | None = None
    executors: list[dict[str, Any]] | None = None
    volumes: list[str] | None = None
    tags: dict[str, str] | None = None
    logs: list[TaskLogOut] | None = None
    creation_time: datetime | None = None


class ListTasksOut(_Out):
    tasks: list[TaskOut]
    next_page_token: str | None = None


class ServiceOrganization(_Out):
    name: str
    url: str


class ServiceType(_Out):
    group: str
    artifact: str
    version: str


class ServiceInfoOut(_Out):
    id: str
    name: str
    type: ServiceType
    description: str
    organization: ServiceOrganization
    contactUrl: str | None = None  # noqa: N815 (the spec's spelling)
    documentationUrl: str | None = None  # noqa: N815
    createdAt: datetime | None = None  # noqa: N815
    updatedAt: datetime | None = None  # noqa: N815
    environment: str | None = None
    version: str
    storage: list[str]
    tesResources_backend_parameters: list[str]  # noqa: N815


class CancelOut(_Out):
    pass
