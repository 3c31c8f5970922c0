"""A crate exported by any instance of this platform, run here as the importing user's calculation
or workflow run (issue 20, part 4), carrying the crate's recorded outputs as what it should reproduce:
once it ended, it has its verdict against them (`actions/verdicts.py`).

Everything is checked before anything is made, and every problem is listed (a 422): the zip and its
metadata (`calculations/crates/imports.py`), each tool at its version and image digest
(`check_tool_available`, as a rerun), each tool's parameters and input roles, each data file's bytes
against its sha256, and each input: in the crate, or already a file of the importing user with the
same sha256 (never another user's). Then, in one transaction, the inputs the user does not hold
become their files and the run is created; if that fails, the blobs it stored for nothing are
deleted again, so a refused import leaves nothing behind. A blob collected before its row
committed (the orphan sweep, another import undone) is stored again, as an upload's is.

A GA4GH TES task's crate is refused (a task names its own images and commands: submit it again); an
ops flow's run is run only where that flow is deployed with the very source the crate records."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django.db import transaction
from pydantic import ValidationError

from calculations.actions.files import check_storage_quota, do_register_blob, new_bytes
from calculations.actions.reruns import check_tool_available, check_verify_calculation
from calculations.actions.transitions import lock_blob
from calculations.actions.workflow_runs import do_create_workflow_run
from calculations.crates.imports import (
    CrateFile,
    CratePlan,
    CrateRefused,
    CrateZip,
    ToolRun,
    open_crate_zip,
    plan_crate,
    read_metadata,
    shown,
    with_file_ids,
)
from calculations.errors import Conflict, InvalidInput, ManyInvalidInputs, NotFound, StorageQuotaExceeded
from calculations.models import Calculation, File, OrphanBlob, WorkflowRun
from calculations.pipelines import plan as plan_pipeline
from calculations.storage import get_storage
from calculations.tools import UnknownTool, get_tool
from calculations.workflow_params import PIPELINE, check_workflow_params, find_workflow
from emgapiv2.config import BASE_DIR, get_settings

REFUSED = "the crate cannot be run here"


@dataclass(frozen=True)
class _Source:
    """Where an input's bytes come from: the user's own file, or a file unzipped from the crate."""

    name: str
    file_id: UUID | None = None
    path: Path | None = None
    size: int = 0


@dataclass(frozen=True)
class ImportedCrate:
    run: Calculation | WorkflowRun  # the importing user's, QUEUED
    source: str  # the run the crate records, by its URL where it ran


def check_import_crate(owner_id: int, zip_path: Path) -> ImportedCrate:
    """Run the crate at `zip_path` here as `owner_id`'s: the new calculation or workflow run.
    ManyInvalidInputs lists every problem found, and then nothing was made."""
    settings = get_settings()
    scratch = _Scratch(settings.spool_dir)
    try:
        try:
            crate, problems = open_crate_zip(zip_path, settings.crate)
        except CrateRefused as exc:
            raise ManyInvalidInputs(REFUSED, exc.problems) from None
        try:
            plan, sources = _check(owner_id, crate, problems, scratch)
        finally:
            crate.close()
        if problems or plan is None:
            raise ManyInvalidInputs(REFUSED, problems)
        return ImportedCrate(_create(owner_id, plan, sources), plan.source)
    finally:
        scratch.clear()


class _Scratch:
    """The inputs unzipped from a crate: files in the spool directory (which the sweeper clears of
    what a killed process left), removed once the import ended either way."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: list[Path] = []

    def new(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.directory, prefix="crate-input-")
        os.close(fd)
        self.paths.append(Path(name))
        return self.paths[-1]

    def clear(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def _check(
    owner_id: int, crate: CrateZip, problems: list[str], scratch: _Scratch
) -> tuple[CratePlan | None, dict[str, _Source]]:
    try:
        graph = read_metadata(crate)
    except CrateRefused as exc:
        problems += exc.problems
        return None, {}
    plan, found = plan_crate(graph, crate)
    problems += found
    if plan is not None:
        checked: set[tuple[str, str, str | None]] = set()
        for run in [plan.run] if plan.run is not None else plan.steps:
            if (run.tool, run.version, run.image_digest) not in checked:  # (a map's steps: the engine asked once)
                checked.add((run.tool, run.version, run.image_digest))
                problems += _tool_problems(run, plan.kind == "calculation")
        if plan.kind == "workflow-run":
            problems += _workflow_problems(owner_id, plan)
    sources = _sources(owner_id, plan, crate, graph, scratch, problems)
    adding = [(sha256, source.size) for sha256, source in sources.items() if source.path is not None]
    try:
        check_storage_quota(owner_id, new_bytes(owner_id, adding), "the crate's inputs")
    except StorageQuotaExceeded as exc:
        problems.append(str(exc))
    return plan, sources


def _where(run: ToolRun) -> str:
    return f"step {run.step}[{run.index}] ({run.tool} {run.version})" if run.step else f"{run.tool} {run.version}"


def _tool_problems(run: ToolRun, alone: bool) -> list[str]:
    """The tool at its version and image digest, and (a calculation) its parameters and input roles."""
    try:
        check_tool_available(run.tool, run.version, image=run.image, image_digest=run.image_digest)
    except Conflict as exc:
        return [f"{_where(run)}: {exc}" if run.step else str(exc)]
    if not alone:
        return []  # a pipeline's steps are checked as the pipeline (its JSON names their parameters)
    spec = get_tool(run.tool)
    problems: list[str] = []
    try:
        spec.params_model.model_validate(run.params)
    except ValidationError as exc:
        problems += [f"parameter {'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()[:20]]
    roles = {role.name for role in spec.inputs}
    if unknown := sorted(set(run.inputs) - roles):
        problems.append(f"input role(s) {', '.join(map(shown, unknown))} are not inputs of {run.tool} {run.version}")
    if missing := sorted(roles - set(run.inputs)):
        problems.append(f"missing input: the crate names no file for {', '.join(map(shown, missing))}")
    return problems


def _workflow_problems(owner_id: int, plan: CratePlan) -> list[str]:
    """A pipeline's JSON holds together; an ops flow is deployed here with the source the crate records."""
    try:
        info = find_workflow(plan.workflow)
    except NotFound as exc:
        return [str(exc)]
    if plan.workflow == PIPELINE:
        try:
            plan_pipeline(plan.params)
        except InvalidInput as exc:
            return [f"the pipeline does not hold together here: {exc}"]
        return []
    source = info.source_file
    if source is not None and not source.is_absolute():
        source = BASE_DIR / source
    if source is None or not source.is_file():
        return [f"workflow {shown(plan.workflow)}: its source is not on this host, so it cannot be compared"]
    here = hashlib.sha256(source.read_bytes()).hexdigest()
    if plan.flow_sha256 != here:
        return [
            f"workflow {shown(plan.workflow)} is deployed here from other source (sha256 {here[:12]}…) than the "
            f"crate records ({(plan.flow_sha256 or 'none')[:12]}…)"
        ]
    plan.params = _decoded(info.parameters_schema, plan.params)
    try:  # the files it names must be the importing user's own (a flow's parameters name them by id)
        check_workflow_params(owner_id, info, plan.params)
    except NotFound as exc:
        return [f"missing input: {exc}"]
    except InvalidInput as exc:
        return [f"the workflow's parameters do not hold here: {exc}"]
    return []


def _decoded(schema: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """An ops flow's parameters as the crate gives them (a value that is not a string or a number as
    its JSON) decoded where the flow's schema does not ask for a string."""
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    decoded: dict[str, Any] = {}
    for name, value in params.items():
        wanted = properties.get(name, {}).get("type") if isinstance(properties.get(name), dict) else None
        if isinstance(value, str) and wanted != "string":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        decoded[name] = value
    return decoded


def _sources(
    owner_id: int,
    plan: CratePlan | None,
    crate: CrateZip,
    graph: dict[str, Any],
    scratch: _Scratch,
    problems: list[str],
) -> dict[str, _Source]:
    """Each input by sha256: the user's own file with those bytes, else the crate's, unzipped; a
    problem naming each that is neither. Every data file the zip holds is read once, here: its bytes
    must have the sha256 (and size) its entity gives, and an input the user does not hold is unzipped
    into `scratch` as it is read (no larger than a file they could upload)."""
    sources: dict[str, _Source] = {}
    wanted: dict[str, tuple[str, CrateFile]] = {}
    max_file = get_settings().max_upload_bytes
    for where, file in plan.needed() if plan is not None else ():
        wanted.setdefault(file.sha256, (where, file))
    own = File.objects.filter(owner_id=owner_id, sha256__in=list(wanted)).order_by("-created_at")
    for sha256, file_id in own.values_list("sha256", "id"):  # (the oldest last: it wins)
        sources[sha256] = _Source(wanted[sha256][1].name, file_id=file_id)
    for path in sorted(crate.entries):
        entity = graph.get(quote(path)) or graph.get(path)
        if entity is None or not isinstance(entity.get("sha256"), str):
            continue  # not a data file the crate describes (its README, the pipeline's JSON)
        expected = entity["sha256"]
        becomes_file = expected in wanted and expected not in sources
        if becomes_file and crate.entries[path].file_size > max_file:  # (as an upload of it would be)
            problems.append(
                f"data file {shown(path)} is {crate.entries[path].file_size} bytes; the limit is {max_file} bytes "
                "per file (EMGAPI_MAX_UPLOAD_BYTES)"
            )
            continue
        target = scratch.new() if becomes_file else None
        try:
            with open(target, "wb") if target is not None else nullcontext() as sink:
                sha256, size = crate.read(path, sink)
        except ValueError as exc:
            problems.append(str(exc))
            if "EMGAPI_CRATE__IMPORT_MAX_UNZIPPED_BYTES" in str(exc):
                break
            continue
        if sha256 != expected:
            problems.append(f"data file {shown(path)}: its bytes' sha256 is {sha256}, the crate says {expected}")
        elif str(entity.get("contentSize", size)) != str(size):
            problems.append(f"data file {shown(path)}: it holds {size} bytes, the crate says {entity['contentSize']}")
        elif target is not None:
            sources[sha256] = _Source(wanted[sha256][1].name, path=target, size=size)
    for sha256, (where, file) in sorted(wanted.items()):
        if sha256 not in sources and file.path is None:  # (one in the zip that did not read is named above)
            problems.append(
                f"missing input: {where}, sha256 {sha256}, is neither in the crate nor one of your files "
                "(upload it, then import again)"
            )
    return sources


def _create(owner_id: int, plan: CratePlan, sources: dict[str, _Source]) -> Calculation | WorkflowRun:
    """The user's files for the inputs they did not hold, then the run; undone whole if it fails."""
    storage = get_storage()
    stored: list[str] = []  # blobs this import put in storage that were not there
    try:
        with transaction.atomic():
            file_ids: dict[str, UUID] = {}
            for sha256, source in sorted(sources.items()):
                if source.path is None:
                    assert source.file_id is not None
                    file_ids[sha256] = source.file_id
                    continue
                existed = storage.exists(sha256)
                info = storage.put_path(source.path)
                if not existed:
                    stored.append(sha256)
                file_ids[sha256] = do_register_blob(owner_id, source.name, info).id
                if not storage.exists(sha256):  # collected before its row existed: stored again, as an upload is
                    storage.put_path(source.path)
                    stored += [sha256] if sha256 not in stored else []
            reason = f"imported from the crate of {plan.source}"
            if plan.run is not None:
                return _create_calculation(owner_id, plan.run, file_ids, reason)
            return _create_workflow_run(owner_id, plan, file_ids, reason)
    except (InvalidInput, NotFound, Conflict) as exc:
        _forget(stored)
        if isinstance(exc, ManyInvalidInputs):
            raise
        raise ManyInvalidInputs(REFUSED, [str(exc)]) from None
    except BaseException:
        _forget(stored)
        raise


def _create_calculation(owner_id: int, run: ToolRun, file_ids: dict[str, UUID], reason: str) -> Calculation:
    return check_verify_calculation(
        owner_id,
        run.tool,
        tool_version=run.version,
        image=run.image,
        image_digest=run.image_digest,
        inputs={role: file_ids[file.sha256] for role, file in run.inputs.items()},
        params=run.params,
        expected=run.expected() if run.completed else None,
        backend=_backend(run),
        reason=reason,
    )


def _backend(run: ToolRun) -> str | None:
    """Where it ran as it ran: in a container if it had an image digest, else as an executable (local);
    the deployment's choice if that backend is not available here."""
    try:
        available = get_tool(run.tool).available_backends()
    except UnknownTool:
        return None
    wanted = "container" if run.image_digest else "local"
    return wanted if wanted in available else None


def _create_workflow_run(owner_id: int, plan: CratePlan, file_ids: dict[str, UUID], reason: str) -> WorkflowRun:
    params = plan.params
    if plan.workflow == PIPELINE:
        ids = {identifier: str(file_ids[file.sha256]) for identifier, file in plan.files.items()}
        params = with_file_ids(plan.params, ids)
    check_workflow_params(owner_id, find_workflow(plan.workflow), params)
    return do_create_workflow_run(owner_id, plan.workflow, params, expected_steps=plan.expected_steps(), reason=reason)


def _forget(stored: list[str]) -> None:
    """Blobs stored for an import that was undone: deleted, unless some row holds them meanwhile."""
    storage = get_storage()
    for sha256 in stored:
        with transaction.atomic():
            lock_blob(sha256)
            if not File.objects.filter(sha256=sha256).exists():
                storage.delete(sha256)
                OrphanBlob.objects.filter(sha256=sha256).delete()
