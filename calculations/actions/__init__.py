"""The actions layer: the only code that creates files and calculations or changes their state.

By concern, one module each; `access_*` look up (404 for others' objects), `check_*` validate and
then act, `do_*` make one transactional change:
- `access`: visibility-checked look-ups;
- `tokens`: API tokens;
- `quotas`: per-user limits (the deployment's, or the user's own);
- `files`: uploads, deletes, names, the storage quota (distinct bytes), orphan blobs;
- `uploads`: presigned S3 multipart uploads, created, completed (verified, then a file), aborted, expired;
- `submissions`: validation, the cache (hit, follow or run), the active-calculation quota, the launch;
- `attempts`: an attempt started, running, heartbeating, ended (through `calculations/policies.py`);
- `cancels`: cancel requests, one for every kind of run (`calculations/run_kinds.py`);
- `reruns`: a run done again as a new one: an operator's of a failed calculation, whatever its program,
  or a user's that verifies its calculation or workflow run (same version and image, no cache);
- `verdicts`: a verifying rerun's verdict, recorded by the action that ends it;
- `imports`: a crate exported by any instance of the platform, run here as a user's calculation or
  workflow run that verifies the crate's outputs (every problem listed first, nothing made if any);
- `followers`: identical calculations that follow one in flight;
- `workflow_runs`: workflow runs submitted, started, resumed, canceled, ended; their steps;
- `workers`: worker processes registered, heartbeating, ended (their own liveness);
- `notifications`: what a run asks to be told (its URL checked), the outbox row its transition inserts,
  the user's webhook secret, the notifier's claims and each delivery attempt's record;
- `transitions`: the guarded, fenced UPDATE and its event row that every state change of every kind
  of run goes through, and the record of the flow run that serves an attempt.

Side effects on other systems (launching a run) happen after commit, through the orchestrator that
`workflows` registers (`calculations/orchestrator.py`).
"""

from calculations.actions.access import (
    access_calculation_by_id,
    access_file_by_id,
    access_upload_by_id,
    access_workflow_run_by_id,
)
from calculations.actions.attempts import (
    JobOutcome,
    do_end_attempt,
    do_mark_running,
    do_record_heartbeats,
    do_start_calculation,
)
from calculations.actions.cancels import do_request_cancel, do_request_cancel_workflow_run, request_cancel
from calculations.actions.files import (
    OutputBlob,
    check_storage_quota,
    check_upload_size,
    clean_file_name,
    do_collect_orphan_blobs,
    do_create_file,
    do_delete_file,
    do_register_blob,
    do_release_outputs,
    held_bytes,
)
from calculations.actions.notifications import (
    check_notify,
    do_claim_notifications,
    do_ensure_webhook_secret,
    do_expire_notifications,
    do_give_up_notification,
    do_record_delivery,
    do_rotate_webhook_secret,
)
from calculations.actions.quotas import do_set_user_quota
from calculations.actions.reruns import (
    check_rerun_calculation,
    check_verify_calculation,
    check_verify_rerun,
    check_verify_workflow_run_rerun,
)
from calculations.actions.submissions import StepRef, check_create_calculation, do_create_calculation
from calculations.actions.tokens import do_create_api_token, do_record_token_use, hash_token
from calculations.actions.transitions import RECONCILER_ACTOR, WORKER_ACTOR, do_record_flow_run, user_actor
from calculations.actions.uploads import check_create_upload, do_abort_upload, do_complete_upload, do_expire_uploads
from calculations.actions.workers import do_end_worker, do_register_worker, do_worker_heartbeat
from calculations.actions.workflow_runs import (
    NewStep,
    check_resume_workflow_run,
    do_adopt_flow_run,
    do_cancel_steps,
    do_create_step,
    do_create_steps,
    do_create_workflow_run,
    do_end_workflow_run,
    do_pause_workflow_run,
    do_resume_workflow_run,
    do_start_workflow_run,
    do_unpause_workflow_run,
)

__all__ = [
    "RECONCILER_ACTOR",
    "WORKER_ACTOR",
    "JobOutcome",
    "OutputBlob",
    "StepRef",
    "access_calculation_by_id",
    "access_file_by_id",
    "access_upload_by_id",
    "access_workflow_run_by_id",
    "do_adopt_flow_run",
    "do_cancel_steps",
    "NewStep",
    "do_create_step",
    "do_create_steps",
    "do_create_workflow_run",
    "do_end_workflow_run",
    "do_pause_workflow_run",
    "do_unpause_workflow_run",
    "do_request_cancel_workflow_run",
    "do_resume_workflow_run",
    "do_start_workflow_run",
    "check_create_calculation",
    "check_notify",
    "do_claim_notifications",
    "do_ensure_webhook_secret",
    "do_expire_notifications",
    "do_give_up_notification",
    "do_record_delivery",
    "do_rotate_webhook_secret",
    "check_rerun_calculation",
    "check_verify_calculation",
    "check_verify_rerun",
    "check_verify_workflow_run_rerun",
    "check_create_upload",
    "check_resume_workflow_run",
    "check_storage_quota",
    "check_upload_size",
    "clean_file_name",
    "do_create_api_token",
    "do_create_calculation",
    "do_collect_orphan_blobs",
    "do_create_file",
    "do_delete_file",
    "do_abort_upload",
    "do_complete_upload",
    "do_expire_uploads",
    "do_register_blob",
    "do_release_outputs",
    "do_end_attempt",
    "do_mark_running",
    "do_record_flow_run",
    "do_record_heartbeats",
    "do_record_token_use",
    "do_request_cancel",
    "request_cancel",
    "do_set_user_quota",
    "do_start_calculation",
    "do_end_worker",
    "do_register_worker",
    "do_worker_heartbeat",
    "hash_token",
    "held_bytes",
    "user_actor",
]
