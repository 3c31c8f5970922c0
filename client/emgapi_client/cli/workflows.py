"""The commands on workflows and pipelines: list them, list runs, run one (uploading local files)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from emgapi_client.cli.app import (
    FILE_MARK,
    ExitCode,
    JsonOption,
    NotifyOnOption,
    NotifyOption,
    ParamOption,
    TimeoutOption,
    err,
    out,
    pipeline_app,
    workflows_app,
)
from emgapi_client.cli.common import (
    finish,
    id_table,
    is_file_id,
    local_file,
    logged_in_client,
    notify_of,
    parse_params,
    print_json,
    progress_of,
    styled,
    transfer_progress,
    upload_paths,
    wait_run,
    when,
    writable_directory,
)
from emgapi_client.client import Client
from emgapi_client.types import SavedOutput, WorkflowRun

# -- workflows and pipelines -------------------------------------------------------------------


@workflows_app.command("ls")
def list_workflows(as_json: JsonOption = False) -> None:
    """The deployed workflows and their parameters."""
    with logged_in_client() as api:
        workflows = api.list_workflows()
    if as_json:
        return print_json(workflows)
    table = Table("workflow", "parameters", "description", show_edge=False)
    for workflow in workflows:
        parameters = ", ".join(workflow["parameters_schema"].get("properties", {}))
        table.add_row(workflow["name"], parameters, escape(workflow["description"].strip().split("\n")[0]))
    out.print(table)


@workflows_app.command("runs")
def list_runs(
    state: Annotated[str | None, typer.Option(metavar="STATE", help="Only in this state.")] = None,
    workflow: Annotated[str | None, typer.Option(metavar="WORKFLOW", help="Only of this workflow.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=5000, help="At most this many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List your workflow runs, newest first."""
    with logged_in_client() as api:
        runs = api.list_workflow_runs(state=state.upper() if state else None, workflow=workflow, limit=limit)
    if as_json:
        return print_json(runs)
    table = id_table("id", "workflow", "state", "created", "error")
    for item in runs:
        table.add_row(
            item["id"], item["workflow"], styled(item["state"]), when(item["created_at"]), escape(item["error"])
        )
    out.print(table)


def _resolve_ref(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        schema = target
    return schema if isinstance(schema, Mapping) else {}


def upload_marked_files(
    schema: Mapping[str, Any], value: Any, root: Mapping[str, Any], upload: Callable[[Path], str]
) -> Any:
    """`value` with each local path in a place the schema marks as a file id replaced by the id that
    `upload` gives it (ids and anything else are left as they are)."""
    node = _resolve_ref(schema, root)
    if node.get(FILE_MARK):
        path = local_file(value) if isinstance(value, str) and not is_file_id(value) else None
        return upload(path) if path is not None else value
    for option in [*node.get("anyOf", []), *node.get("allOf", []), *node.get("oneOf", [])]:
        value = upload_marked_files(option, value, root, upload)
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {
            key: upload_marked_files(properties[key], item, root, upload)
            if key in properties
            else upload_marked_files(extra, item, root, upload)
            if isinstance(extra, Mapping)
            else item
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        return [upload_marked_files(node["items"], item, root, upload) for item in value]
    return value


def _uploader(api: Client, quiet: bool) -> Callable[[Path], str]:
    """Upload a local file once (as often as it is named), with its progress bar."""
    ids: dict[Path, str] = {}

    def upload(path: Path) -> str:
        if path.resolve() not in ids:
            ids[path.resolve()] = upload_paths(api, [path], quiet)[0]["id"]
        return ids[path.resolve()]

    return upload


def _launched(
    api: Client, run: WorkflowRun, wait: bool, timeout: float | None, as_json: bool, download: Path | None
) -> None:
    if not as_json:
        err.print(f"launched [bold]{run['workflow']}[/] {run['id']}: {styled(run['state'])}")
    if not (wait or download):
        if as_json:
            return print_json(run)
        out.print(run["id"])
        return None
    try:
        run = wait_run(api, run["id"], as_json, timeout)
    except KeyboardInterrupt:
        err.print(f"interrupted: {run['id']} goes on (`emgapi cancel {run['id']}` stops it)")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    saved: list[SavedOutput] = []
    if download is not None and run["state"] == "COMPLETE":
        with transfer_progress(as_json) as progress:
            saved = api.download_run_outputs(
                run, download, progress=lambda file: progress_of(progress, file["name"], file["size"])
            )
    if as_json:
        result: dict[str, Any] = dict(run)
        if download is not None:
            result["downloaded"] = [
                {"step": item.step, "index": item.index, "role": item.role, "path": str(item.path)} for item in saved
            ]
        print_json(result)
    else:
        for item in saved:
            out.print(escape(str(item.path)))
    finish(run, as_json)


WaitOption = Annotated[bool, typer.Option("--wait", help="Show every step live (queued, running, done) until it ends.")]
DownloadOption = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        file_okay=False,
        help="Wait, then download each step's outputs into DIR/<step>/ (a map's elements: DIR/<step>/<index>/).",
    ),
]


@workflows_app.command("run")
def run_workflow(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A deployed workflow (`emgapi workflows ls`).")],
    params: ParamOption = None,
    wait: WaitOption = False,
    download: DownloadOption = None,
    notify_url: NotifyOption = None,
    notify_on: NotifyOnOption = None,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Launch a workflow run. A parameter that takes a file id may be given a local path: the file is
    uploaded and its id passed (a list parameter may be given once or repeated).

    Exit code with --wait or --download: 0 COMPLETE, 3 EXECUTOR_ERROR, 4 SYSTEM_ERROR, 5 CANCELED.
    """
    values = parse_params(params)
    notify = notify_of(notify_url, notify_on)
    if download is not None:
        writable_directory(download, "--download")
    with logged_in_client() as api:
        schema = api.get_workflow(name)["parameters_schema"]
        for key, value in values.items():
            node = _resolve_ref(schema.get("properties", {}).get(key, {}), schema)
            if node.get("type") == "array" and not isinstance(value, list):
                values[key] = [value]
        values = upload_marked_files(schema, values, schema, _uploader(api, as_json))
        _launched(api, api.run_workflow(name, values, notify=notify), wait, timeout, as_json, download)


def _pipeline_file(target: str, base: Path, where: str) -> Path:
    """The local file a pipeline's `file:<path>` names: relative, under `base` once resolved (links
    followed). A pipeline may come from someone else: it must not make its user upload any file
    they can read (`file:/home/me/.ssh/id_rsa`, `file:../../secret`)."""
    relative = Path(target)
    if relative.is_absolute() or target.startswith("~"):
        raise typer.BadParameter(
            f"{where}: {target!r}: a file: path is relative to the pipeline's directory "
            "(upload other files with `emgapi upload` and name them file:<id>)",
            param_hint="FILE",
        )
    root = base.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise typer.BadParameter(
            f"{where}: {target!r} is outside the pipeline's directory {root} "
            "(upload it with `emgapi upload` and name it file:<id>)",
            param_hint="FILE",
        )
    if not path.is_file():
        raise typer.BadParameter(f"{where}: {target!r} is neither a file id nor a local file", param_hint="FILE")
    return path


def upload_pipeline_files(pipeline: Mapping[str, Any], base: Path, upload: Callable[[Path], str]) -> dict[str, Any]:
    """The pipeline with each `file:<path>` input naming a local file under `base` (relative to it)
    replaced by `file:<id>` of its upload; `file:<id>`s and other steps' outputs are left as they are."""

    def replace(reference: Any, where: str) -> Any:
        if isinstance(reference, list):
            return [replace(item, where) for item in reference]
        if isinstance(reference, dict):
            return {key: replace(item, where) for key, item in reference.items()}
        if not isinstance(reference, str) or not reference.startswith("file:"):
            return reference
        target = reference.removeprefix("file:")
        if is_file_id(target):
            return reference
        return f"file:{upload(_pipeline_file(target, base, where))}"

    steps = pipeline.get("steps")
    if not isinstance(steps, Mapping):
        raise typer.BadParameter('the pipeline needs {"steps": {name: {"tool": …, "inputs": …}}}', param_hint="FILE")
    return {
        **pipeline,
        "steps": {
            name: {**step, "inputs": replace(step.get("inputs"), f"steps.{name}.inputs")}
            if isinstance(step, Mapping) and "inputs" in step
            else step
            for name, step in steps.items()
        },
    }


@pipeline_app.command("run")
def run_pipeline(
    file: Annotated[str, typer.Argument(metavar="FILE.json", help='The pipeline: {"steps": {…}} ("-": stdin).')],
    wait: WaitOption = False,
    download: DownloadOption = None,
    notify_url: NotifyOption = None,
    notify_on: NotifyOnOption = None,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a pipeline, a DAG of tools given as JSON: the built-in `pipeline` workflow's parameters.

    An input is `file:<id>`, `<step>.<output role>`, or {"each": [...]} of those; `file:<path>` of a
    local file in FILE's directory or below (a relative path; with "-", the current directory's)
    uploads it and passes its id.

    Exit code with --wait or --download: 0 COMPLETE, 3 EXECUTOR_ERROR, 4 SYSTEM_ERROR, 5 CANCELED.
    """
    try:
        text, base = (sys.stdin.read(), Path.cwd()) if file == "-" else (Path(file).read_text(), Path(file).parent)
        pipeline = json.loads(text)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from None
    if isinstance(pipeline, dict) and "params" in pipeline and "steps" not in pipeline:
        pipeline = pipeline["params"]  # the whole request body, as posted with curl
    if not isinstance(pipeline, dict):
        raise typer.BadParameter(f"{file} holds no JSON object", param_hint="FILE")
    notify = notify_of(notify_url, notify_on)
    if download is not None:
        writable_directory(download, "--download")
    with logged_in_client() as api:
        params = upload_pipeline_files(pipeline, base, _uploader(api, as_json))
        _launched(api, api.run_workflow("pipeline", params, notify=notify), wait, timeout, as_json, download)
