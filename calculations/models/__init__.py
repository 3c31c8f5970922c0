from calculations.models.calculations import Calculation, CalculationEvent, CalculationInput
from calculations.models.files import File, HeldBytes, OrphanBlob
from calculations.models.idempotency import IdempotentRequest
from calculations.models.notifications import Notification, NotificationStatus, WebhookSecret
from calculations.models.tes import TesTag, TesTask
from calculations.models.tokens import ApiToken, UserQuota
from calculations.models.uploads import Upload, UploadState
from calculations.models.workers import WorkerProcess
from calculations.models.workflows import WorkflowRun, WorkflowRunEvent

__all__ = [
    "ApiToken",
    "Calculation",
    "CalculationEvent",
    "CalculationInput",
    "File",
    "HeldBytes",
    "IdempotentRequest",
    "Notification",
    "NotificationStatus",
    "OrphanBlob",
    "Upload",
    "UploadState",
    "TesTag",
    "TesTask",
    "UserQuota",
    "WebhookSecret",
    "WorkerProcess",
    "WorkflowRun",
    "WorkflowRunEvent",
]
