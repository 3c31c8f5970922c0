"""The commands on files and calculations: login, tools, upload, run, ls, show, wait, logs, cancel, download."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from emgapi_client.client import Client, normalise_url
from emgapi_client.config import (
    DEFAULT_URL,
    store_credentials,
    stored_credentials,
)
from emgapi_client.errors import ApiError
from emgapi_client.types import Calculation, LogStream, Resources, WorkflowRun

if TYPE_CHECKING:
    pass


from emgapi_client.cli.app import (
    ExitCode,
    JsonOption,
    NotifyOnOption,
    NotifyOption,
    ParamOption,
    TimeoutOption,
    app,
    err,
    out,
    visible,
)
from emgapi_client.cli.common import (
    calculation_or_run,
    check_id,
    described_resources,
    finish,
    id_table,
    is_file_id,
    is_run,
    local_file,
    logged_in_client,
    notify_of,
    parse_params,
    print_json,
    progress_of,
    show_calculation,
    show_run,
    split_pair,
    styled,
    transfer_progress,
    upload_paths,
    wait_calculation,
    wait_run,
    when,
    writable_directory,
)

# -- commands ----------------------------------------------------------------------------------

RunId = Annotated[str, typer.Argument(metavar="ID", help="A calculation or a workflow run.")]


@app.command()
def login(
    url: Annotated[str | None, typer.Option(metavar="URL", help="The platform, e.g. http://127.0.0.1:8000.")] = None,
    token: Annotated[
        str | None, typer.Option(metavar="TOKEN", help="Your API token (asked for, hidden, if not given).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a token against the API and remember it and the URL (in a file only you can read)."""
    stored = stored_credentials()
    if url is None:
        url = typer.prompt("Platform URL", default=stored.url or DEFAULT_URL, err=True)
    if token is None:
        token = typer.prompt("API token", hide_input=True, err=True)
    url, token = normalise_url(url), token.strip()
    with Client(url, token) as api:
        api.check_token()
    path = store_credentials(url, token)
    if as_json:
        print_json({"url": url, "config": str(path)})
    else:
        err.print(f"Logged in to {url} (saved in {path})")


@app.command()
def tools(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Show this tool's inputs, outputs and parameters.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the registered tools, or show one."""
    with logged_in_client() as api:
        if name is None:
            summaries = api.list_tools()
            if as_json:
                return print_json(summaries)
            table = Table("tool", "version", "description", show_edge=False)
            for summary in summaries:
                table.add_row(summary["name"], summary["version"], escape(summary["description"]))
            return out.print(table)
        tool = api.get_tool(name)
    if as_json:
        return print_json(tool)
    out.print(f"[bold]{tool['name']}[/] {tool['version']}: {escape(tool['description'])}")
    out.print(f"backends: {', '.join(tool['backends'])} (default {tool['default_backend']})")
    resources = tool["resources"]
    most = described_resources(resources, "max_") + ("" if resources.get("max_gpus") else ", no GPU")
    out.print(f"resources: {described_resources(resources)} unless asked; at most {most}")
    usage = tool.get("usage")
    for band in usage["bands"] if usage else []:
        recommendation = band["recommendation"]
        line = f"measured: {recommendation['basis']}"
        if usage and usage["defaults_on"]:
            line += (
                f" (given {recommendation['default_memory_mb']} MB unless asked, on {', '.join(usage['defaults_on'])})"
            )
        out.print(escape(line))
    for role in tool["inputs"]:
        out.print(f"input  {role['name']}: {escape(role['description'])} ({', '.join(role['formats'])})")
    for role in tool["outputs"]:
        out.print(f"output {role['name']}: {escape(role['description'])}")
    for param, spec in tool["params_schema"].get("properties", {}).items():
        default = f" (default {json.dumps(spec['default'])})" if "default" in spec else ""
        out.print(f"param  {param}: {escape(spec.get('description', ''))}{escape(default)}")


@app.command()
def upload(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Local files.", exists=True, dir_okay=False, readable=True)
    ],
    as_json: JsonOption = False,
) -> None:
    """Upload files (progress shown); each one's sha256 is checked against what the server stored."""
    with logged_in_client() as api:
        uploaded = upload_paths(api, files, quiet=as_json)
    if as_json:
        return print_json(uploaded)
    table = id_table("id", "name", "size", "sha256")
    for file in uploaded:
        table.add_row(file["id"], escape(file["name"]), str(file["size"]), file["sha256"])
    out.print(table)


@app.command()
def run(
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="A registered tool (`emgapi tools` lists them).")],
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="ROLE=PATH|ID",
            help="An input: a local file (uploaded) or the id of one of your files.",
        ),
    ] = None,
    params: ParamOption = None,
    backend: Annotated[
        str | None, typer.Option(metavar="BACKEND", help="local, container or slurm (default: the tool's).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show its state live until it ends.")] = False,
    download: Annotated[
        Path | None,
        typer.Option(metavar="DIR", file_okay=False, help="Wait, then download its outputs into DIR."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run it even if an identical one exists.")] = False,
    notify_url: NotifyOption = None,
    notify_on: NotifyOnOption = None,
    cpus: Annotated[int | None, typer.Option(metavar="N", min=1, help="CPUs (default: the tool's).")] = None,
    memory_mb: Annotated[
        int | None, typer.Option("--memory-mb", metavar="MB", min=1, help="Memory (default: the tool's).")
    ] = None,
    time_limit: Annotated[
        int | None,
        typer.Option("--time-limit", metavar="SECONDS", min=1, help="Wall time limit (default: the tool's)."),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option(metavar="N", min=0, help="GPUs (container or slurm, where the deployment has them).")
    ] = None,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a tool: upload local inputs, submit, and (with --wait or --download) wait for the end.
    --cpus, --memory-mb, --time-limit and --gpus ask for more or less than the tool's own (the server
    refuses what is above the tool's or the deployment's maximum, naming it).

    Exit code: 0 COMPLETE, 3 EXECUTOR_ERROR, 4 SYSTEM_ERROR, 5 CANCELED (when waiting).
    """
    local: dict[str, Path] = {}
    file_ids: dict[str, str] = {}
    for pair in inputs or []:
        role, value = split_pair(pair, "--input")
        if role in local or role in file_ids:
            raise typer.BadParameter(f"{role!r} is given twice (a role takes one file)", param_hint="--input")
        if (path := local_file(value)) is not None:
            local[role] = path
        elif is_file_id(value):
            file_ids[role] = value
        else:
            raise typer.BadParameter(f"{pair!r}: {value!r} is neither a local file nor a file id", param_hint="--input")
    submitted_params = parse_params(params)
    notify = notify_of(notify_url, notify_on)
    asked = {"cpus": cpus, "memory_mb": memory_mb, "time_limit_seconds": time_limit, "gpus": gpus}
    resources = cast(Resources, {name: value for name, value in asked.items() if value is not None})
    if download is not None:
        writable_directory(download, "--download")
    with logged_in_client() as api:
        # a wrong tool or role is refused before any upload (the server would refuse it after)
        known = {role["name"] for role in api.get_tool(tool)["inputs"]}
        if unknown := sorted((set(local) | set(file_ids)) - known):
            raise typer.BadParameter(
                f"{tool} has no input role {', '.join(map(repr, unknown))} (it takes {', '.join(sorted(known))})",
                param_hint="--input",
            )
        roles = list(local)
        for role, file in zip(roles, upload_paths(api, [local[role] for role in roles], quiet=as_json), strict=True):
            file_ids[role] = file["id"]
        calc = api.submit(
            tool,
            file_ids,
            submitted_params,
            backend=backend,
            use_cache=not no_cache,
            notify=notify,
            resources=resources,
        )
        if not as_json:
            cached = " (answered from an identical calculation)" if calc["cache_hit"] else ""
            err.print(f"submitted [bold]{tool}[/] {calc['id']}: {styled(calc['state'])}{cached}")
        if not (wait or download):
            if as_json:
                return print_json(calc)
            out.print(calc["id"])
            return None
        try:
            calc = wait_calculation(api, calc["id"], as_json, timeout)
        except KeyboardInterrupt:
            err.print(f"interrupted: {calc['id']} goes on (`emgapi cancel {calc['id']}` stops it)")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        downloaded: list[tuple[str, Path]] = []
        if download is not None and calc["state"] == "COMPLETE":
            with transfer_progress(as_json) as progress:
                downloaded = api.download_outputs(
                    calc, download, progress=lambda file: progress_of(progress, file["name"], file["size"])
                )
    if as_json:
        result: dict[str, Any] = dict(calc)
        if download is not None:
            result["downloaded"] = [{"role": role, "path": str(path)} for role, path in downloaded]
        print_json(result)
    else:
        show_calculation(calc)
        for role, path in downloaded:
            out.print(f"{role}: {escape(str(path))}")
    finish(calc, as_json)


@app.command("ls")
def list_calculations(
    state: Annotated[
        str | None, typer.Option(metavar="STATE", help="Only in this state (e.g. RUNNING, COMPLETE).")
    ] = None,
    tool: Annotated[str | None, typer.Option(metavar="TOOL", help="Only of this tool.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=5000, help="At most this many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List your calculations, newest first."""
    with logged_in_client() as api:
        calcs = api.list_calculations(state=state.upper() if state else None, tool=tool, limit=limit)
    if as_json:
        return print_json(calcs)
    table = id_table("id", "tool", "state", "backend", "created", "workflow step")
    for calc in calcs:
        step = f"{calc['step']}[{calc['step_index'] or 0}]" if calc["workflow_run"] else ""
        table.add_row(calc["id"], calc["tool"], styled(calc["state"]), calc["backend"], when(calc["created_at"]), step)
    out.print(table)


@app.command()
def show(
    object_id: RunId,
    as_json: JsonOption = False,
) -> None:
    """Show a calculation (state, inputs, outputs, provenance) or a workflow run (its steps)."""
    with logged_in_client() as api:
        item = calculation_or_run(api, check_id(object_id))
    if as_json:
        print_json(item)
    elif is_run(item):
        show_run(item)
    else:
        show_calculation(item)


@app.command()
def wait(
    object_id: RunId,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until a calculation or workflow run ends; the exit code says how it ended, and the last
    line how long it ran (its own start to its end, not the time spent waiting) or who canceled it."""
    with logged_in_client() as api:
        item = calculation_or_run(api, check_id(object_id))
        try:
            if is_run(item):
                item = wait_run(api, object_id, as_json, timeout)
            else:
                item = wait_calculation(api, object_id, as_json, timeout)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        print_json(item)
    finish(item, as_json)


@app.command()
def logs(
    calculation_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print the logs as the tool writes them, until it ends.")
    ] = False,
    stream: Annotated[
        str | None,
        typer.Option(metavar="stdout|stderr", help="Only this stream (stdout or stderr), printed on stdout."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A calculation's stdout and stderr (their ends if long; everything with --follow).

    Without --stream, the tool's stdout goes to stdout and its stderr to stderr. With --follow, the
    exit code is the calculation's end state's (0 COMPLETE, 3, 4, 5). On a terminal, control
    characters are shown (\\x1b), never obeyed; to a file or a pipe, the log is as the tool wrote it.
    """
    if stream not in (None, "stdout", "stderr"):
        raise typer.BadParameter("stdout or stderr", param_hint="--stream")
    streams = cast(tuple[LogStream, ...], ("stdout", "stderr") if stream is None else (stream,))
    targets = {"stdout": sys.stdout, "stderr": sys.stdout if stream else sys.stderr}
    # to a terminal, a tool's control characters are shown, never obeyed; to a file or a pipe, the
    # log goes as the tool wrote it (`logs --follow > file` keeps it whole)
    shown = {name: visible if target.isatty() else str for name, target in targets.items()}
    with logged_in_client() as api:
        check_id(calculation_id)
        if not follow:
            tails = api.logs(calculation_id)
            if as_json:
                return print_json(tails)
            for name in streams:
                targets[name].write(shown[name](tails[name]))
            if tails["truncated"]:
                err.print("[dim](only the end of a long log is shown; --follow prints all of it)[/]")
            return None
        try:
            for name, text in api.follow_logs(calculation_id, streams):
                if as_json:
                    _print_json_line({"stream": name, "data": text})
                else:
                    targets[name].write(shown[name](text))
                    targets[name].flush()
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        calc = api.get_calculation(calculation_id)
    finish(calc, True)


def _print_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


@app.command()
def cancel(
    object_id: RunId,
    as_json: JsonOption = False,
) -> None:
    """Cancel a calculation, or a workflow run and every step of it in flight."""
    with logged_in_client() as api:
        item = calculation_or_run(api, check_id(object_id))
        result: Calculation | WorkflowRun = (
            api.cancel_workflow_run(object_id) if is_run(item) else api.cancel_calculation(object_id)
        )
    if as_json:
        return print_json(result)
    err.print(f"{object_id}: {styled(result['state'])}")


@app.command("download")
def download_command(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation (its outputs) or a file.")],
    directory: Annotated[
        Path, typer.Option("--dir", "-d", file_okay=False, metavar="DIR", help="Into this directory.")
    ] = Path(),
    as_json: JsonOption = False,
) -> None:
    """Download a calculation's outputs, or one file, each under its own name (sha256 checked)."""
    with logged_in_client() as api:
        check_id(object_id)
        try:
            calc: Calculation | None = api.get_calculation(object_id)
        except ApiError as exc:
            if exc.status_code != 404:
                raise
            calc = None
        with transfer_progress(as_json) as progress:
            if calc is not None:
                if calc["state"] != "COMPLETE":
                    raise ApiError(409, f"calculation {object_id} is {calc['state']}: it has no outputs to download")
                saved = api.download_outputs(
                    calc, directory, progress=lambda file: progress_of(progress, file["name"], file["size"])
                )
                downloaded = [{"role": role, "path": str(path)} for role, path in saved]
            else:
                try:
                    file = api.get_file(object_id)
                except ApiError as exc:
                    if exc.status_code == 404:
                        raise ApiError(404, f"no calculation or file {object_id} is yours") from None
                    raise
                path = api.download(file, directory, progress=progress_of(progress, file["name"], file["size"]))
                downloaded = [{"file": file["id"], "path": str(path)}]
    if as_json:
        return print_json(downloaded)
    for entry in downloaded:
        out.print(escape(entry["path"]))
