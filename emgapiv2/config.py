"""The one Settings object: every configurable value of the platform, read from the environment.

Variables are prefixed `EMGAPI_`; nested sections use `__` (`EMGAPI_DB__URL`).
`.env.example` documents each of them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BASE_DIR = Path(__file__).resolve().parent.parent


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:pass@host:port/name). Unset: SQLite in data_dir.",
    )
    sqlite_timeout_seconds: float = Field(20, description="How long a SQLite writer waits for the lock.")


class StorageSettings(BaseModel):
    backend: Literal["filesystem", "s3"] = Field("filesystem", description="Where file contents live.")
    root: Path | None = Field(None, description="Filesystem blob root. Unset: data_dir/blobs.")


class S3Settings(BaseModel):
    endpoint_url: str | None = Field(None, description="S3 endpoint; unset means AWS itself.")
    bucket: str = Field("emgapi", description="Bucket holding the content-addressed blobs.")
    access_key_id: str | None = Field(None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    region: str = Field("us-east-1", description="S3 region used for signing.")
    key_prefix: str = Field("blobs/", description="Prefix of every blob key in the bucket.")
    public_endpoint_url: str | None = Field(
        None,
        description="The S3 endpoint as clients reach it: presigned URLs are signed for it. Unset: endpoint_url.",
    )


class PrefectSettings(BaseModel):
    api_url: str = Field("http://127.0.0.1:4200/api", description="Prefect server API URL.")
    work_pool: str = Field("calculations", description="Work pool served by the calculation worker.")
    ui_url: str = Field(
        "http://127.0.0.1:4200", description="The Prefect dashboard as operators reach it (the admin links to it)."
    )
    docker_work_pool: str = Field(
        "docker", description="Work pool of the workflows that may block, served by Prefect's Docker worker."
    )
    kubernetes_work_pool: str = Field(
        "kubernetes",
        description="Work pool of the workflows run as Kubernetes Jobs, served by Prefect's Kubernetes worker.",
    )
    deployment: str = Field(
        "run-calculation/run-calculation", description="Deployment (flow/deployment) that runs one calculation."
    )
    dispatch: Literal["background", "off"] = Field(
        "background",
        description="'background': the API triggers flow runs after commit from a dispatcher thread. "
        "'off': rows stay QUEUED until the reconciler dispatches them (unit tests).",
    )


class WorkerSettings(BaseModel):
    query_seconds: float = Field(
        0.25, gt=0, description="How often the worker asks Prefect for scheduled runs while nothing can wake it."
    )
    idle_poll_seconds: float = Field(
        5,
        gt=0,
        description="A notification wakes the worker when a run is launched (PostgreSQL's NOTIFY; on SQLite a socket "
        "in data_dir/wakeups); it still asks Prefect this often (runs launched from Prefect's dashboard, a "
        "notification sent while its listener reconnected).",
    )
    concurrency: int = Field(500, description="Flow runs one worker process executes at once.")
    cancel_check_seconds: float = Field(1.0, description="How often a running calculation checks for a cancel.")
    heartbeat_seconds: float = Field(
        15, description="Heartbeat interval: of the worker in the Prefect UI, and of each calculation it runs."
    )
    kill_grace_seconds: float = Field(5, description="SIGTERM to SIGKILL grace period when cancelling a tool.")
    liveness_seconds: float = Field(5, gt=0, description="How often a worker records that it is alive.")
    dead_after_seconds: float = Field(
        20, gt=0, description="A worker silent for this long is dead: its attempts are settled (and retried)."
    )


BackendName = Literal["local", "container", "slurm"]


class ExecutionSettings(BaseModel):
    enabled: list[BackendName] = Field(
        ["local"], description="Backends this deployment offers (JSON list of local, container, slurm)."
    )
    sandbox_user: str = Field(
        "nobody", description="Unprivileged user the local backend's tools run as when the worker is root."
    )
    allow_unsandboxed: bool = Field(
        False,
        description="Run local tools without bubblewrap where it is missing (they then have the worker's rights). "
        "Unset: the local backend refuses to run tools unsandboxed.",
    )
    default: BackendName | None = Field(
        None,
        description="Backend used when a request names none and the tool supports it. Unset: each tool's own default.",
    )
    cgroups: bool = Field(
        True,
        description="Put each local job in a cgroup of its own where the worker can make one (cgroup v1; on v2 only "
        "where the worker's own cgroup already hands memory to its children, which v2 allows only to a cgroup with "
        "no process of its own): memory and CPUs enforced by the kernel, out of memory detected, the tool's usage "
        "measured. Off, or where none can be made: memory is an address-space rlimit and only wall time is measured.",
    )
    cgroups_favor_moves: bool = Field(
        True,
        description="Where jobs get cgroup v1 hierarchies, turn on the kernel's favordynmods for the host (a "
        "hierarchy of no controller mounted with it beside the host's): each job moves into its cgroups without "
        "waiting for an RCU grace period (~11 ms of a job's start), and forks and exits on the host cost a little "
        "more. Off: the kernel's default.",
    )


class ContainerSettings(BaseModel):
    docker_host: str | None = Field(
        None,
        description="Docker API socket (unix:///… or tcp://…); Podman's compatible socket works too. "
        "Unset: DOCKER_HOST.",
    )
    poll_seconds: float = Field(
        30, description="Safety-net inspection interval per container; exits arrive through the events stream."
    )
    gpus_available: bool = Field(
        False, description="The engine has GPUs (NVIDIA container toolkit): a request may ask for `gpus`."
    )


class SlurmSettings(BaseModel):
    partition: str | None = Field(None, description="sbatch --partition. Unset: the cluster's default.")
    account: str | None = Field(None, description="sbatch --account.")
    extra_args: list[str] = Field([], description='Extra sbatch arguments (JSON list), e.g. ["--qos=normal"].')
    poll_seconds: float = Field(2, description="How often one squeue call checks every job this worker waits on.")
    container_runtime: Literal["", "docker", "podman"] = Field(
        "", description="Run the tool's container inside the job with this CLI; empty: the tool's executable."
    )
    bin_dir: Path | None = Field(None, description="Directory of sbatch/squeue/scancel/scontrol. Unset: PATH.")
    gpus_available: bool = Field(
        False, description="The cluster has GPUs (gres gpu): a request may ask for `gpus` (sbatch --gres=gpu:N)."
    )


class TesSettings(BaseModel):
    """The GA4GH TES API (/ga4gh/tes/v1): what a task may ask for."""

    allowed_images: list[str] = Field(
        [],
        description='Images a TES task may name (JSON list; shell-style wildcards, e.g. "emgapi/*"). Empty: the '
        "registered tools' images. Users a staff member granted 'Can run any container image' may name any image.",
    )
    backend: Literal["", "container", "slurm"] = Field(
        "",
        description="Backend TES tasks run on. Empty: the container backend if enabled, else Slurm if enabled with "
        "EMGAPI_SLURM__CONTAINER_RUNTIME set.",
    )
    default_cpus: int = Field(1, ge=1, description="CPU cores of a task that asks for none.")
    max_cpus: int = Field(4, ge=1, description="Most CPU cores a task may ask for (400 above it).")
    default_ram_gb: float = Field(1.0, gt=0, description="Memory (GB) of a task that asks for none.")
    max_ram_gb: float = Field(16.0, gt=0, description="Most memory (GB) a task may ask for (400 above it).")
    default_disk_gb: float = Field(
        1.0,
        gt=0,
        description="Scratch space (GB) of a task that asks for none (resources.disk_gb): the most its directories "
        "may hold, inputs included. It counts against the owner's storage quota while the task is in flight.",
    )
    max_disk_gb: float = Field(100.0, gt=0, description="Most scratch space (GB) a task may ask for (400 above it).")
    scratch_check_seconds: float = Field(
        2,
        gt=0,
        description="How often the worker measures a running task's directories; one that holds more than its "
        "scratch space is stopped (EXECUTOR_ERROR). A larger tree is measured less often (at most a tenth of the "
        "time is spent measuring).",
    )
    time_limit_seconds: int = Field(
        24 * 3600, ge=1, description="Wall-time limit of each executor (TES has no field for it)."
    )
    max_executors: int = Field(32, ge=1, description="Most executors in one task.")
    max_tags: int = Field(64, ge=0, description="Most tags on one task.")
    max_output_files: int = Field(
        1000, ge=1, description="Most files a task's outputs may store (wildcards and directories count each file)."
    )
    max_content_bytes: int = Field(
        256 * 1024, ge=0, description="Most bytes of inline `content` inputs in one task: larger data goes in as files."
    )
    s3_input_buckets: list[str] = Field(
        [],
        description="Buckets (JSON list) whose s3:// objects tasks may read as inputs with the platform's S3 "
        "credentials, besides the user's own files. Empty: none.",
    )
    executor_log_bytes: int = Field(
        64 * 1024, ge=0, description="Most bytes of each executor's stdout and stderr a task's FULL view shows."
    )


class SweeperSettings(BaseModel):
    interval_seconds: float = Field(60, gt=0, description="How often each worker sweeps (workflows/worker/sweeper.py).")
    work_retention_hours: float = Field(1, ge=0, description="Work directories of ended attempts are kept this long.")
    failed_work_retention_days: float = Field(
        7, ge=0, description="Work directories of failed calculations are kept this long, to debug them."
    )
    spool_max_age_hours: float = Field(1, ge=0, description="Upload spools and partial blobs older than this go.")
    orphan_blob_grace_hours: float = Field(
        1, ge=0, description="A blob no file holds any more is erased after this grace period."
    )


class UploadSettings(BaseModel):
    """Presigned S3 transfers (design brief §6): clients PUT and GET the bytes at S3 itself."""

    part_bytes: int = Field(
        64 * 1024**2,
        ge=5 * 1024**2,
        le=5 * 1024**3,
        description="Part size of a presigned multipart upload (S3 allows 5 MiB to 5 GiB); larger for an upload "
        "that would otherwise need more than 10,000 parts.",
    )
    expiry_hours: float = Field(
        24,
        gt=0,
        le=168,
        description="An upload not completed within this is aborted by the sweeper, and its part URLs stop working "
        "(SigV4 URLs live 7 days at most).",
    )
    max_open: int = Field(20, ge=1, description="Unfinished uploads one user may have at once (more: 429).")
    download_url_seconds: int = Field(
        3600,
        ge=1,
        le=604800,
        description="How long a presigned download URL (GET /files/{id}/content?redirect=true) works.",
    )


class ReconcilerSettings(BaseModel):
    interval_seconds: int = Field(30, description="Schedule of the reconcile-calculations flow.")
    dispatch_after_seconds: float = Field(
        10, description="A QUEUED row without a flow run older than this is dispatched by the reconciler."
    )
    stale_after_seconds: float = Field(
        90, description="A running calculation whose heartbeat is older than this has lost its worker."
    )
    pending_after_seconds: float = Field(
        600,
        description="A flow run claimed (PENDING) for longer than this was lost by its worker. Long: a busy "
        "worker may take a while to start each of many runs it claimed at once.",
    )


class QuotaSettings(BaseModel):
    max_active_calculations: int = Field(
        100,
        ge=1,
        description="Calculations one user may have running or queued to run (more: 429); a workflow's steps "
        "count while they run (more wait), a workflow run with none running counts one.",
    )
    storage_bytes: int = Field(
        100 * 1024**3,
        ge=0,
        description="Distinct bytes of files (uploads and outputs) one user may hold (more: 413, or a failed "
        "calculation whose outputs would not fit). Identical contents and cache hits count once.",
    )
    max_output_bytes: int = Field(
        10 * 1024**3, ge=0, description="Most bytes of outputs one calculation may produce (more: EXECUTOR_ERROR)."
    )
    tool_output_bytes: dict[str, int] = Field(
        {}, description='Per-tool output limits that replace max_output_bytes (JSON), e.g. {"obabel": 1073741824}.'
    )

    def output_limit(self, tool: str) -> int:
        return self.tool_output_bytes.get(tool, self.max_output_bytes)


class AdminSettings(BaseModel):
    """The Django admin's calculation page."""

    log_tail_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024**2,
        description="Last bytes of a calculation's stdout and of its stderr its admin page shows (the whole log "
        "is a link).",
    )


class AdminLoginSettings(BaseModel):
    failure_limit: int = Field(5, ge=1, description="Wrong admin passwords (per user and address) before a lockout.")
    cooloff_minutes: float = Field(15, gt=0, description="How long a locked-out user and address must wait.")


class WorkflowSettings(BaseModel):
    """Workflow runs (design brief §10): one flow run each, its steps task runs in it."""

    max_parallel_steps: int = Field(
        1000, ge=1, description="Steps of one workflow run that run (or wait on their backend) at once."
    )
    local_step_slots: int = Field(
        0,
        ge=0,
        description="Steps one worker runs at once on the local backend (0: the machine's CPU count), "
        "served to users in turn.",
    )
    max_attempts: int = Field(
        20,
        ge=1,
        description="Times a workflow run is resumed after its worker was lost; its COMPLETE steps never rerun.",
    )
    operator_username: str = Field(
        "operator",
        description="The account that owns what operators launch from the Prefect dashboard (tools, workflows).",
    )
    pause_timeout_seconds: int = Field(
        86400, ge=1, description="How long a workflow run waits for an operator's input before it fails."
    )
    pause_poll_seconds: int = Field(
        2, ge=1, description="How often a paused workflow run checks whether it was resumed or canceled."
    )
    max_params_depth: int = Field(
        32,
        ge=4,
        le=200,
        description="Deepest nesting (objects and lists) of a workflow run's parameters or a resume's input (422 "
        "deeper): Prefect's client fails on deeply nested values.",
    )
    max_params_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="Largest workflow run's parameters (or a resume's input) as JSON (422 above it); they are "
        "stored with the run and sent to Prefect. A pipeline mapped over 10,000 files needs about 450 KB.",
    )
    max_result_bytes: int = Field(
        2**20,
        ge=1024,
        description="Largest return value of a flow stored on its workflow run (as JSON; GET /workflow-runs/{id} "
        "shows it): a larger one, or one that is not JSON, leaves the run COMPLETE with no result and says why.",
    )
    step_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="Least level of a step's log lines sent to the Prefect dashboard (its task run's): "
        "INFO adds two lines per step, which a map of thousands pays for in server CPU.",
    )
    docker_image: str = Field(
        "emgapi/app:latest",
        description="The platform's image, which each Docker-pool flow run gets (task images -- --app).",
    )
    docker_network: str = Field(
        "host", description="Network mode of the Docker-pool containers: they reach Prefect and the database."
    )
    docker_volumes: list[str] = Field(
        [],
        description="Volumes of the Docker-pool containers (JSON list). Empty: the data directory at its own "
        "path (the compose stack names its data volume instead).",
    )
    docker_mount_source: bool = Field(
        True, description="Mount this checkout into the Docker-pool containers (false: the image carries the code)."
    )
    kubernetes_image: str = Field(
        "emgapi/app:latest",
        description="The platform's image, which each Kubernetes-pool flow run's Job gets (it carries the code).",
    )
    kubernetes_namespace: str = Field(
        "emgapi", description="Namespace of the Kubernetes-pool Jobs: the platform's own (deployment/kubernetes/)."
    )
    deployments_cache_seconds: float = Field(
        5, ge=0, description="How long the API keeps the list of deployed workflows it read from Prefect."
    )


class DashboardSettings(BaseModel):
    """What operators launch from the Prefect dashboard's forms (a tool-<name> deployment, a workflow)."""

    any_users_files: bool = Field(
        False,
        description="A launch may name any user's files, if the operator account (workflow.operator_username) is "
        "staff: the run then belongs to the files' one owner. False: only the operator account's own files.",
    )


class CrateSettings(BaseModel):
    """RO-Crate exports of a run (GET /calculations/{id}/crate, /workflow-runs/{id}/crate), and imports of
    one (POST /crates): a zip, bounded before and while it is read."""

    license: str = Field(
        "https://spdx.org/licenses/CC-BY-4.0",
        description="The license every exported crate names (a URL, e.g. an SPDX license's): a crate without one "
        "is invalid.",
    )
    publisher: str = Field("EMG calculations platform", description="The publisher's name every crate names.")
    publisher_url: str | None = Field(
        None, description="The publisher's URL (the crate's publisher entity's id). Unset: EMGAPI_PUBLIC_URL."
    )
    max_data_bytes: int = Field(
        100 * 1024**2,
        ge=0,
        description="Most bytes of data files a crate holds with ?data=small (the default); the files left out are "
        "listed with their sha256, size and download URL.",
    )
    import_max_zip_bytes: int = Field(
        2 * 1024**3,
        ge=1024,
        description="Largest crate zip POST /api/v2/crates accepts (413 above it, refused by its Content-Length "
        "before a byte is read).",
    )
    import_max_entries: int = Field(10_000, ge=2, description="Most entries (files and folders) in an imported zip.")
    import_max_unzipped_bytes: int = Field(
        8 * 1024**3,
        ge=1024,
        description="Most bytes an imported zip's entries hold in all, unzipped: their headers are checked before "
        "anything is read, and what is unzipped is counted as it is read (a header that lies is caught).",
    )
    import_max_ratio: float = Field(
        200,
        ge=2,
        description="Highest compression ratio (unzipped / zipped) of an imported zip's entry larger than 1 MiB, or "
        "of the whole zip (a zip bomb is refused with a 422).",
    )
    import_max_metadata_bytes: int = Field(
        64 * 1024**2,
        ge=1024,
        description="Largest ro-crate-metadata.json of an imported crate (a 1,000-step map's is a few MB); it "
        "also bounds the JSON objects and members it may hold, at twice an exported crate's density.",
    )


class ResourceSettings(BaseModel):
    """The most a calculation's `resources` request may ask for, whatever its tool allows; and what its
    tool's measured runs suggest it be given when it asks for no memory (recommend_*: calculations/usage.py)."""

    max_cpus: int = Field(16, ge=1, description="CPUs a request may ask for.")
    max_memory_mb: int = Field(65536, ge=1, description="Memory (MB) a request may ask for.")
    max_time_limit_seconds: int = Field(7 * 86400, ge=1, description="Time limit (seconds) a request may ask for.")
    max_gpus: int = Field(4, ge=0, description="GPUs a request may ask for (on a backend that has them).")
    # measured usage (calculations/usage.py): GET /tools/{name} shows it; RECOMMEND_DEFAULTS makes it the default
    recommend_defaults: bool = Field(
        False,
        description="Give a request that does not ask for memory what its tool's runs of inputs of that size "
        "measured (their p95 peak, × recommend_margin), once recommend_min_runs of them completed. Off: the tool's "
        "own memory_mb.",
    )
    recommend_margin: float = Field(
        1.25, ge=1, description="The measured p95 peak memory is multiplied by this to make a default request."
    )
    recommend_min_runs: int = Field(
        20, ge=1, description="Complete runs of inputs of a size band before their figures make a recommendation."
    )
    recommend_floor_mb: int = Field(
        64, ge=1, description="A default request from measured usage is never less memory than this (MB)."
    )
    recommend_backends: list[BackendName] = Field(
        ["container", "slurm"],
        description="Backends whose requests take the recommended memory (JSON list): those that limit resident "
        "memory, as the peak is measured. The local backend limits address space unless it has cgroups "
        "(EMGAPI_EXECUTION__CGROUPS), far above a tool's resident peak.",
    )
    recommend_window: int = Field(
        500, ge=1, description="The statistics are of each tool's last this many complete, measured runs."
    )
    recommend_cache_seconds: float = Field(
        60, ge=0, description="How long a process reuses a tool's statistics before reading them again."
    )


class RetrySettings(BaseModel):
    """Which failures are retried, and how the backoff grows, is calculations/policies.py."""

    max_attempts: int = Field(3, ge=1, description="Attempts a calculation gets when the platform fails it.")
    backoff_seconds: float = Field(10, ge=0, description="Wait before the first retry.")
    backoff_factor: float = Field(2, ge=1, description="Each further retry waits this much longer.")
    max_backoff_seconds: float = Field(600, ge=0, description="Longest wait before a retry.")
    on_oom: bool = Field(
        True,
        description="An attempt killed for exceeding its memory is retried at once with memory_factor times the "
        "memory, up to the tool's or the request's cap, while attempts are left (a tool or a request may say "
        "otherwise).",
    )
    on_time_limit: bool = Field(
        True, description="Likewise, an attempt killed for its time limit is retried with time_factor times the time."
    )
    memory_factor: float = Field(2, gt=1, description="Memory of the next attempt after an out-of-memory kill.")
    time_factor: float = Field(2, gt=1, description="Time limit of the next attempt after a time-limit kill.")


class NotifySettings(BaseModel):
    """Notifications (webhooks) a run asks for: checked when asked, sent by every worker's notifier."""

    allowed_private_hosts: list[str] = Field(
        [],
        description='Hosts (names) and networks (CIDRs, e.g. "127.0.0.1" or "10.1.0.0/16") a notification URL may '
        "name although they are loopback, link-local, private or reserved addresses (JSON list). Empty: only public "
        "addresses, so that a webhook cannot probe the platform's own network.",
    )
    max_url_length: int = Field(2048, ge=16, le=2048, description="Longest notification URL (422 above it).")
    poll_seconds: float = Field(1, gt=0, description="How often the notifier looks for deliveries due.")
    batch: int = Field(100, ge=1, description="Deliveries one worker sends at once, at most.")
    lease_seconds: float = Field(
        60,
        gt=0,
        description="A claimed delivery is another worker's to send after this (its worker died mid-send): more "
        "than 3 × timeout_seconds (a send's longest).",
    )
    timeout_seconds: float = Field(10, gt=0, description="Connect, write and read timeout of one delivery.")
    backoff_seconds: float = Field(10, gt=0, description="Wait before the first retry of a delivery that failed.")
    backoff_factor: float = Field(2, ge=1, description="Each further retry waits this much longer.")
    max_backoff_seconds: float = Field(3600, gt=0, description="Longest wait between two attempts.")
    give_up_after_hours: float = Field(
        24, gt=0, description="A delivery still failing this long after its run's change is given up (failed)."
    )
    keep_days: float = Field(
        30,
        gt=0,
        description="Delivered and given-up notifications are deleted this long after their run's change "
        "(the sweeper); pending ones never are.",
    )
    response_bytes: int = Field(
        1024, ge=0, description="Most bytes of a receiver's response read (its error shows their start)."
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifySettings:
        # a send ends within 3 × timeout_seconds; a lease shorter than that lets another worker send it too
        if self.lease_seconds <= 3 * self.timeout_seconds:
            raise ValueError("EMGAPI_NOTIFY__LEASE_SECONDS must be more than 3 × EMGAPI_NOTIFY__TIMEOUT_SECONDS")
        return self


class MetricsSettings(BaseModel):
    """Prometheus metrics: GET /metrics on the API, and on each worker's own listener."""

    token: SecretStr | None = Field(
        None,
        description="Bearer token a scrape of /metrics must send (the API's and every worker's); without it, 401. "
        "Unset: generated on first start into data_dir/secrets/metrics-token (0600), which the API and the worker "
        "share when they share data_dir; set it where they do not.",
    )
    worker_host: str = Field(
        "127.0.0.1",
        description="Address the worker's /metrics listener binds to: 0.0.0.0 where Prometheus runs on another "
        "host or container.",
    )
    worker_port: int = Field(
        9464, ge=0, le=65535, description="Port of the worker's /metrics listener; 0: none. One per worker on a host."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMGAPI_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    debug: bool = Field(False, description="Django DEBUG. Never in production.")
    secret_key: SecretStr | None = Field(
        None, description="Django SECRET_KEY. Unset: generated on first start into data_dir/secrets (0600)."
    )
    allowed_hosts: list[str] = Field(["127.0.0.1", "localhost", "testserver"], description="Django ALLOWED_HOSTS.")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL clients use to reach the API.")
    data_dir: Path = Field(BASE_DIR / "var", description="Local state: SQLite DB, blobs, work directories.")
    work_dir: Path | None = Field(None, description="Per-calculation working directories. Unset: data_dir/work.")
    tool_packages: list[str] = Field(
        ["tools"], description="Python packages whose subpackages each declare one tool (JSON list)."
    )
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest accepted upload (413 above it).")
    max_json_bytes: int = Field(
        1024**2, ge=1024, description="Largest JSON request body (413 above it): data goes in as uploaded files."
    )
    max_json_members: int = Field(
        20_000, ge=100, description="Most keys, in all its objects, of one JSON body (413 above it)."
    )
    max_validation_errors: int = Field(20, ge=1, description="Validation errors listed in one 422 (and a count).")
    log_tail_bytes: int = Field(1024 * 1024, description="Most bytes of each log stream the logs endpoint returns.")
    log_chunk_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        le=16 * 1024**2,
        description="Most bytes of one stream that one GET /calculations/{id}/logs?stream=… returns.",
    )

    db: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    s3: S3Settings = S3Settings()
    prefect: PrefectSettings = PrefectSettings()
    worker: WorkerSettings = WorkerSettings()
    reconciler: ReconcilerSettings = ReconcilerSettings()
    sweeper: SweeperSettings = SweeperSettings()
    retry: RetrySettings = RetrySettings()
    resources: ResourceSettings = ResourceSettings()
    workflow: WorkflowSettings = WorkflowSettings()
    dashboard: DashboardSettings = DashboardSettings()
    quota: QuotaSettings = QuotaSettings()
    uploads: UploadSettings = UploadSettings()
    admin: AdminSettings = AdminSettings()
    admin_login: AdminLoginSettings = AdminLoginSettings()
    execution: ExecutionSettings = ExecutionSettings()
    container: ContainerSettings = ContainerSettings()
    slurm: SlurmSettings = SlurmSettings()
    tes: TesSettings = TesSettings()
    crate: CrateSettings = CrateSettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()

    @property
    def blob_root(self) -> Path:
        return self.storage.root or self.data_dir / "blobs"

    @property
    def spool_dir(self) -> Path:
        """Where uploads and S3 transfers spool (the sweeper removes what a killed process left)."""
        return self.data_dir / "spool"

    @property
    def calculations_dir(self) -> Path:
        return self.work_dir or self.data_dir / "work"


@lru_cache
def get_settings() -> Settings:
    return Settings()
