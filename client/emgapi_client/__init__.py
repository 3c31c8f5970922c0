"""Python client of the EMG calculations API, and the `emgapi` command line (client/README.md)."""

from emgapi_client.client import DEFAULT_PRESIGNED_THRESHOLD_BYTES, Client, __version__
from emgapi_client.errors import ApiError, ApiUnreachable, ChecksumMismatch, EmgapiError, UnsafeFileName, WaitTimeout
from emgapi_client.types import (
    TERMINAL_STATES,
    Calculation,
    File,
    LogChunk,
    Logs,
    PendingStep,
    SavedOutput,
    Step,
    Tool,
    ToolSummary,
    Verdict,
    Workflow,
    WorkflowRun,
    WorkflowRunSummary,
)

__all__ = [
    "DEFAULT_PRESIGNED_THRESHOLD_BYTES",
    "TERMINAL_STATES",
    "ApiError",
    "ApiUnreachable",
    "Calculation",
    "ChecksumMismatch",
    "Client",
    "EmgapiError",
    "File",
    "LogChunk",
    "Logs",
    "PendingStep",
    "SavedOutput",
    "Step",
    "Tool",
    "ToolSummary",
    "UnsafeFileName",
    "Verdict",
    "WaitTimeout",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunSummary",
    "__version__",
]
