"""GA4GH TES tasks: checked and created as calculations of the pseudo-tool `TES_TOOL`, and the
log each attempt keeps (executors' exit codes and output tails, the outputs' container paths)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction

from calculations.actions.files import check_scratch_quota
from calculations.actions.submissions import NewCalculation, Rerun, do_create_calculation
from calculations.actions.transitions import lock_calculation
from calculations.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound
from calculations.models import Calculation, File, TesTag, TesTask
from calculations.names import check_environment, check_file_name, check_image_reference
from calculations.resources import RESOURCE_NAMES
from calculations.tes import TES_TOOL, TES_VERSION
from calculations.tes.external import s3_client
from calculations.tes.paths import plan_mounts
from calculations.tes.schemas import FileType, InputIn, OutputIn, TaskIn
from calculations.tools import get_registry
from emgapiv2.config import get_settings

FILE_PATH = re.compile(r"^/api/v2/files/(?P<id>[0-9a-fA-F-]{36})(/content)?/?$")
EMGAPI_FILE = re.compile(r"^emgapi://files/(?P<id>[0-9a-fA-F-]{36})$")
# what backend_parameters a task may set (with backend_parameters_strict, any other is a 400)
BACKEND_PARAMETERS = ("time_limit_seconds",)
RUN_ANY_IMAGE = "calculations.run_any_image"
HOW_TO_ENABLE = (
    "start a container engine (task engines-up), build the images (task images) and enable the container "
    'backend (EMGAPI_EXECUTION__ENABLED=\'["local","container"]\'), or run containers in Slurm jobs '
    '(EMGAPI_EXECUTION__ENABLED with "slurm" and EMGAPI_SLURM__CONTAINER_RUNTIME=docker or podman)'
)


def tes_backend() -> str:
    """The backend TES tasks run on here, or a 409 saying how to enable one (a 4xx: retrying cannot
    help, and py-tes hides a 5xx behind its fallback paths' 404s)."""
    settings = get_settings()
    enabled = settings.execution.enabled
    slurm_ok = "slurm" in enabled and bool(settings.slurm.container_runtime)
    if settings.tes.backend == "container" and "container" in enabled:
        return "container"
    if settings.tes.backend == "slurm" and slurm_ok:
        return "slurm"
    if not settings.tes.backend:
        if "container" in enabled:
            return "container"
        if slurm_ok:
            return "slurm"
    chosen = f" (EMGAPI_TES__BACKEND={settings.tes.backend})" if settings.tes.backend else ""
    raise Conflict(f"this deployment runs no containers{chosen}, so it cannot run TES tasks: {HOW_TO_ENABLE}")


def allowed_images() -> list[str]:
    configured = get_settings().tes.allowed_images
    return configured or sorted(spec.image.name for spec in get_registry().values() if spec.image)


def check_image(owner_id: int, image: str, where: str) -> None:
    """A valid image reference (a 400 otherwise, whoever asks) that the allowlist or the user's
    permission admits. Parsed first: a wildcard such as `alpine:*` would also match `alpine:x/../..`."""
    check_image_reference(image, where)
    patterns = allowed_images()
    if any(fnmatchcase(image, pattern) for pattern in patterns):
        return
    user = get_user_model().objects.get(id=owner_id)
    if user.has_perm(RUN_ANY_IMAGE):
        return
    listed = ", ".join(patterns) or "none"
    raise Forbidden(
        f"{where}: image {image!r} is not one this deployment allows (allowed: {listed}); a staff member can "
        "grant you the permission 'Can run any container image in GA4GH TES tasks'"
    )


@dataclass(frozen=True)
class ExternalObject:
    bucket: str
    key: str


@dataclass(frozen=True)
class Unreachable:
    """A well-formed URL this deployment cannot read from or write to. The task is accepted, as other
    TES servers accept it, and its attempt ends SYSTEM_ERROR with `reason` before any executor runs:
    which locations a deployment reaches is its own limit, not a mistake in the request."""

    where: str
    reason: str

    def stored(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}


# a URL that names a location (scheme://…), as opposed to a plain name or a path
LOCATION_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def _resolve_input(owner_id: int, i: int, item: InputIn, hosts: set[str]) -> File | ExternalObject | Unreachable | None:
    """The file an input names: one of yours, an allowed S3 object, a location this deployment cannot
    read (the task will fail saying so), or None for inline content."""
    where = f"inputs[{i}]"
    if item.type is FileType.DIRECTORY:
        raise InvalidInput(f"{where}.type: DIRECTORY inputs are not supported here; list each file as an input")
    if item.content is not None and item.url:
        raise InvalidInput(f"{where}: give either url or content, not both")
    if item.content is not None:
        return None
    if not item.url:
        raise InvalidInput(f"{where}: give a url (emgapi://files/<id>, this API's file URL, s3://…) or content")
    url = item.url
    parts = urlsplit(url)
    ours = parts.scheme in ("http", "https") and parts.netloc in hosts
    match = EMGAPI_FILE.match(url) or (FILE_PATH.match(parts.path) if ours else None)
    if match is not None:
        try:
            file_id = UUID(match["id"])
        except ValueError:
            raise InvalidInput(f"{where}.url: {url!r} does not hold a file id") from None
        file = File.objects.filter(id=file_id, owner_id=owner_id).first()
        if file is None:
            raise NotFound(f"{where}.url: file {file_id} not found")
        return file
    location = LOCATION_URL.match(url)
    if location is None or ours or parts.scheme == "emgapi":
        # not a URL, or one of this API that names none of its files: a mistake in the request
        raise InvalidInput(
            f"{where}.url: {url!r} names no file; use emgapi://files/<id>, this API's file URLs "
            f"(…/api/v2/files/<id> on {', '.join(sorted(hosts))}), s3://bucket/key, or inline content"
        )
    if parts.scheme == "s3":
        return _resolve_s3(owner_id, where, parts.netloc, parts.path.lstrip("/"))
    return Unreachable(
        f"{where}.url",
        f"{url!r}: this deployment does not fetch {location['scheme']}:// URLs; name one of your files "
        "(emgapi://files/<id>, this API's file URLs), an s3:// object it may read, or give inline content",
    )


def _resolve_s3(owner_id: int, where: str, bucket: str, key: str) -> File | ExternalObject | Unreachable:
    settings = get_settings()
    url = f"s3://{bucket}/{key}"
    if settings.storage.backend != "s3":
        return Unreachable(
            f"{where}.url",
            f"{url!r}: this deployment keeps files on its filesystem and reads no s3:// objects "
            "(EMGAPI_STORAGE__BACKEND=s3 with EMGAPI_TES__S3_INPUT_BUCKETS would)",
        )
    if bucket == settings.s3.bucket:
        # the platform's own blobs: only one of your files, by its content address
        prefix = settings.s3.key_prefix
        sha256 = key[len(prefix) :] if key.startswith(prefix) else ""
        file = File.objects.filter(owner_id=owner_id, sha256=sha256).first() if sha256 else None
        if file is None:
            raise NotFound(f"{where}.url: no file of yours is stored at {url}")
        return file
    if bucket not in settings.tes.s3_input_buckets:
        allowed = ", ".join(settings.tes.s3_input_buckets) or "none"
        return Unreachable(
            f"{where}.url",
            f"{url!r}: bucket {bucket!r} is not one tasks may read here (EMGAPI_TES__S3_INPUT_BUCKETS: {allowed})",
        )
    if not key:
        raise InvalidInput(f"{where}.url: s3://{bucket}/ names no object")
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's errors: absent, forbidden, unreachable
        raise InvalidInput(f"{where}.url: cannot read {url}: {exc}") from None
    return ExternalObject(bucket, key)


def _resolve_output(i: int, output: OutputIn) -> Unreachable | None:
    """Outputs are stored as the owner's files, and `url` may name the file. A location URL (s3://…)
    names a place this deployment never writes to: the task will fail saying so."""
    url = output.url
    if not url:
        return None
    if location := LOCATION_URL.match(url):
        return Unreachable(
            f"outputs[{i}].url",
            f"{url!r}: this deployment stores outputs as your files and writes to no {location['scheme']}:// "
            "location; leave url empty or give a plain name (the task's logs give each stored file's URL)",
        )
    if urlsplit(url).scheme:
        raise InvalidInput(
            f"outputs[{i}].url: {url!r} is not supported; leave it empty or give a plain relative name: "
            "the output is stored as your file, and the task's logs give its URL"
        )
    check_file_name(url, f"outputs[{i}].url")  # the stored file's name, which a client may save it as
    return None


def _check_resources(task: TaskIn) -> tuple[list[str], dict[str, Any]]:
    """Notes for the task's system log (what was ignored), and the resources the executors get."""
    limits = get_settings().tes
    resources = task.resources
    notes: list[str] = []
    cpus = (resources.cpu_cores if resources else None) or limits.default_cpus
    ram_gb = (resources.ram_gb if resources else None) or limits.default_ram_gb
    if cpus > limits.max_cpus:
        raise InvalidInput(f"resources.cpu_cores: {cpus} is more than the {limits.max_cpus} a task may ask for")
    if ram_gb > limits.max_ram_gb:
        raise InvalidInput(f"resources.ram_gb: {ram_gb} is more than the {limits.max_ram_gb} a task may ask for")
    disk_gb = (resources.disk_gb if resources else None) or limits.default_disk_gb
    if disk_gb > limits.max_disk_gb:
        raise InvalidInput(f"resources.disk_gb: {disk_gb} is more than the {limits.max_disk_gb} a task may ask for")
    time_limit = limits.time_limit_seconds
    parameters = (resources.backend_parameters if resources else None) or {}
    unknown = sorted(set(parameters) - set(BACKEND_PARAMETERS))
    if unknown and resources is not None and resources.backend_parameters_strict:
        raise InvalidInput(
            f"resources.backend_parameters: {', '.join(map(repr, unknown))} not supported (supported: "
            f"{', '.join(BACKEND_PARAMETERS)}), and backend_parameters_strict is set"
        )
    if unknown:
        notes.append(f"backend_parameters ignored (not supported): {', '.join(unknown)}")
    if "time_limit_seconds" in parameters:
        try:
            time_limit = int(parameters["time_limit_seconds"])
        except ValueError:
            raise InvalidInput("resources.backend_parameters.time_limit_seconds: not a whole number") from None
        if not 1 <= time_limit <= limits.time_limit_seconds:
            raise InvalidInput(
                f"resources.backend_parameters.time_limit_seconds: must be 1 to {limits.time_limit_seconds}"
            )
    memory_mb = max(int(ram_gb * 1024), 16)
    _check_deployment_caps(cpus, memory_mb, time_limit)
    return notes, {"cpus": cpus, "memory_mb": memory_mb, "time_limit_seconds": time_limit,
                   "disk_bytes": int(disk_gb * 1024**3)}  # fmt: skip


def _check_deployment_caps(cpus: int, memory_mb: int, time_limit: int) -> None:
    """A task is bound by what any calculation may ask for here too (EMGAPI_RESOURCES__MAX_*)."""
    caps = get_settings().resources
    for field, value, cap, setting in (
        ("cpu_cores", cpus, caps.max_cpus, "CPUS"),
        ("ram_gb", memory_mb, caps.max_memory_mb, "MEMORY_MB"),
        ("backend_parameters.time_limit_seconds", time_limit, caps.max_time_limit_seconds, "TIME_LIMIT_SECONDS"),
    ):
        if value > cap:
            unit = " MB" if field == "ram_gb" else ""
            raise InvalidInput(
                f"resources.{field}: {value}{unit} is above this deployment's maximum of {cap}{unit} "
                f"(EMGAPI_RESOURCES__MAX_{setting})"
            )


def check_create_tes_task(owner_id: int, task: TaskIn, *, hosts: set[str], rerun: Rerun | None = None) -> Calculation:
    """Validate a TES task (backend, images, paths, inputs, resources) and create its calculation.
    `hosts` are the host[:port]s under which this API's file URLs name its own files."""
    backend = tes_backend()
    limits = get_settings().tes
    if len(task.tags or {}) > limits.max_tags:
        raise InvalidInput(f"tags: {len(task.tags or {})} tags; the limit is {limits.max_tags}")
    if len(task.executors) > limits.max_executors:
        raise InvalidInput(f"executors: {len(task.executors)} executors; the limit is {limits.max_executors}")
    for i, executor in enumerate(task.executors):
        check_image(owner_id, executor.image, f"executors[{i}].image")
        check_environment(executor.env or {}, f"executors[{i}].env")
    plan = plan_mounts(task)
    for i, output in enumerate(task.outputs or ()):
        if output.name:  # the output's role: a file name too (a client may save the file by it)
            check_file_name(output.name, f"outputs[{i}].name")
    content_bytes = sum(len(item.content.encode()) for item in task.inputs or () if item.content is not None)
    if content_bytes > limits.max_content_bytes:
        raise InvalidInput(
            f"inputs: {content_bytes} bytes of inline content; the limit is {limits.max_content_bytes}: "
            "upload larger data as a file (POST /api/v2/files) and name it by its URL"
        )
    unwritable = [_resolve_output(i, output) for i, output in enumerate(task.outputs or ())]
    notes, resources = _check_resources(task)
    resolved = {i: _resolve_input(owner_id, i, item, hosts) for i, item in enumerate(task.inputs or ())}
    unreachable = [item for item in [*resolved.values(), *unwritable] if isinstance(item, Unreachable)]
    return do_create_tes_task(owner_id, task, backend=backend, resolved=resolved, mounts=plan.directories,
                              resources=resources, notes=notes, unreachable=unreachable, rerun=rerun)  # fmt: skip


def input_role(index: int) -> str:
    return f"inputs[{index}]"


@transaction.atomic
def do_create_tes_task(
    owner_id: int,
    task: TaskIn,
    *,
    backend: str,
    resolved: dict[int, File | ExternalObject | Unreachable | None],
    mounts: tuple[str, ...],
    resources: dict[str, Any],
    notes: list[str],
    unreachable: Sequence[Unreachable] = (),
    rerun: Rerun | None = None,
) -> Calculation:
    """The calculation (through the one creation path: QUEUED, launched after commit, never from the
    cache), then its TES task and tags in the same transaction."""
    check_scratch_quota(owner_id, resources["disk_bytes"])
    params = task.stored()
    files = {input_role(i): item for i, item in resolved.items() if isinstance(item, File)}
    new = NewCalculation(
        program=TES_TOOL, version=TES_VERSION, params=params, files=files, backend=backend, use_cache=False,
        reason=f"TES task {task.name or ''}".strip(), rerun=rerun,
        resources={name: resources.get(name, 0) for name in RESOURCE_NAMES},  # provenance keeps the grant
    )  # fmt: skip
    calc = do_create_calculation(owner_id, new)
    external = {
        str(i): {"bucket": item.bucket, "key": item.key}
        for i, item in resolved.items()
        if isinstance(item, ExternalObject)
    }
    tes = TesTask.objects.create(
        calculation=calc,
        name=task.name or "",
        description=task.description or "",
        spec={
            "task": params,
            "mounts": list(mounts),
            "resources": resources,
            "external_inputs": external,
            # the worker ends the task with these before it stages anything
            "unreachable": [item.stored() for item in unreachable],
        },
        tags=task.tags or {},
        logs={"1": {"logs": [], "outputs": [], "system_logs": notes}} if notes else {},
    )
    TesTag.objects.bulk_create(TesTag(task=tes, key=key, value=value) for key, value in (task.tags or {}).items())
    return calc


def _attempt_log(tes: TesTask, attempt: int) -> dict[str, Any]:
    log: dict[str, Any] = tes.logs.setdefault(str(attempt), {"logs": [], "outputs": [], "system_logs": []})
    return log


@transaction.atomic
def do_record_tes_log(
    calculation_id: UUID,
    attempt: int,
    *,
    executor: dict[str, Any] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    system_log: str | None = None,
    job_id: str | None = None,
) -> None:
    """Append to the TaskLog of `attempt` (fenced: a superseded attempt records nothing): an
    executor's log, the outputs' container paths, a system log line; and the executor's job id,
    which the calculation shows as its current backend job."""
    calc = lock_calculation(calculation_id)
    if calc.attempt != attempt:
        raise InvalidTransition(f"calculation {calc.id} is on attempt {calc.attempt}; attempt {attempt} is over")
    tes = TesTask.objects.select_for_update().get(calculation_id=calculation_id)
    log = _attempt_log(tes, attempt)
    if executor is not None:
        log["logs"].append(executor)
    if outputs is not None:
        log["outputs"] = outputs
    if system_log:
        log["system_logs"].append(system_log)
    tes.save(update_fields=["logs"])
    if job_id and job_id != calc.backend_job_id:
        Calculation.objects.filter(id=calc.id, attempt=attempt).update(backend_job_id=job_id)
