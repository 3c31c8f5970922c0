"""Python client of the EMG calculations API, and the `emgapi` command line (client/README.md)."""

from emgapi_client.client import DEFAULT_PRESIGNED_THRESHOLD_BYTES, Client, __version__
from emgapi_client.errors import ApiError, ApiUnreachable, ChecksumMismatch, EmgapiError, UnsafeFileName, WaitTimeout
from emgapi_client.types import (
    TERMINAL_STATES,
    Calculation,
    File,
    LogChunk,
    Logs,
    Notification,
    Notify,
    PendingStep,
    SavedOutput,
    Step,
    Tool,
    ToolSummary,
    Verdict,
    WebhookSecret,
    Workflow,
    WorkflowRun,
    WorkflowRunSummary,
)
from emgapi_client.webhooks import verify_signature

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
    "Notification",
    "Notify",
    "PendingStep",
    "SavedOutput",
    "Step",
    "Tool",
    "ToolSummary",
    "UnsafeFileName",
    "Verdict",
    "WebhookSecret",
    "WaitTimeout",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunSummary",
    "__version__",
    "verify_signature",
]
