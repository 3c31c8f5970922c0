"""`emgapi`: the calculations API from a shell. Results go to stdout (a table, or JSON with `--json`);
progress, live state and errors go to stderr. The exit code says how things ended (see `ExitCode`)."""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, cast
from uuid import UUID

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from emgapi_client.client import Client, __version__, normalise_url
from emgapi_client.config import (
    DEFAULT_URL,
    ConfigError,
    current_credentials,
    store_credentials,
    stored_credentials,
)
from emgapi_client.errors import ApiError, ApiUnreachable, ChecksumMismatch, EmgapiError, InvalidUrl, WaitTimeout
from emgapi_client.types import Calculation, File, LogStream, ProgressCallback, WorkflowRun

if TYPE_CHECKING:
    from typing_extensions import TypeIs


class ExitCode(IntEnum):
    """The CLI's exit codes (client/README.md has the table)."""

    OK = 0  # done; a calculation or workflow run waited for is COMPLETE
    USAGE = 2  # a wrong option or argument, a missing input file, not logged in
    EXECUTOR_ERROR = 3  # the tool failed
    SYSTEM_ERROR = 4  # the platform failed (after its retries)
    CANCELED = 5
    API_ERROR = 6  # the API refused the request (4xx/5xx); the message is its detail
    UNREACHABLE = 7  # no answer from the API
    CHECKSUM_MISMATCH = 8  # the bytes the server holds are not the local ones
    WAIT_TIMEOUT = 9  # --timeout passed before the end
    INTERRUPTED = 130  # Ctrl-C (what runs on the platform goes on)


STATE_EXIT_CODES: Mapping[str, ExitCode] = {
    "COMPLETE": ExitCode.OK,
    "EXECUTOR_ERROR": ExitCode.EXECUTOR_ERROR,
    "SYSTEM_ERROR": ExitCode.SYSTEM_ERROR,
    "CANCELED": ExitCode.CANCELED,
}
STATE_STYLES = {
    "COMPLETE": "green",
    "EXECUTOR_ERROR": "red",
    "SYSTEM_ERROR": "red",
    "CANCELED": "yellow",
    "CANCELING": "yellow",
    "PAUSED": "magenta",
    "RUNNING": "cyan",
}
FILE_MARK = "x-emgapi-file"  # the JSON-schema mark of a workflow parameter holding a file id

out = Console(soft_wrap=True)
err = Console(stderr=True)

app = typer.Typer(
    name="emgapi",
    help="Run bioinformatics tools as tracked calculations on an EMG calculations platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
workflows_app = typer.Typer(help="Deployed workflows and their runs.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipelines: DAGs of tools (the built-in `pipeline` workflow).", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(pipeline_app, name="pipeline")

JsonOption = Annotated[bool, typer.Option("--json", help="Print plain JSON on stdout (for scripts).")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", metavar="SECONDS", help="Give up waiting after this long (exit 9).")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="A parameter; VALUE is JSON when it parses (5, 1e-5, true, [1,2]), else a string. "
        "Repeat a NAME for a list.",
    ),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"emgapi {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run bioinformatics tools as tracked calculations on an EMG calculations platform.

    Log in once with `emgapi login` (or set EMGAPI_URL and EMGAPI_TOKEN).
    """


# -- helpers -----------------------------------------------------------------------------------


def _client() -> Client:
    credentials = current_credentials()
    if not credentials.url or not credentials.token:
        raise ConfigError("not logged in: run `emgapi login`, or set EMGAPI_URL and EMGAPI_TOKEN")
    return Client(credentials.url, credentials.token)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def _is_file_id(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _check_id(value: str) -> str:
    if not _is_file_id(value):
        raise typer.BadParameter(f"{value!r} is not an id (a UUID)", param_hint="ID")
    return value


def _styled(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'dim')}]{state}[/]"


def _split_pair(text: str, option: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise typer.BadParameter(f"{text!r}: expected NAME=VALUE", param_hint=option)
    return name.strip(), value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: then the value is the string itself


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """`--param name=value`s as a dict: each value as JSON when it parses, else as the string; a name
    given again makes a list."""
    params: dict[str, Any] = {}
    repeated: set[str] = set()
    for pair in pairs or []:
        name, text = _split_pair(pair, "--param")
        try:
            value = json.loads(text, parse_constant=_not_json)
        except ValueError:
            value = text
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise typer.BadParameter(f"{pair!r}: {text} is not a finite number", param_hint="--param") from None
        if name in repeated:
            params[name].append(value)
        elif name in params:
            params[name] = [params[name], value]
            repeated.add(name)
        else:
            params[name] = value
    return params


@contextmanager
def _transfers(quiet: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    )
    with progress:
        yield progress


def _progress_of(progress: Progress, description: str, total: int) -> ProgressCallback:
    task = progress.add_task(escape(description), total=total)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


def _upload_paths(api: Client, paths: list[Path], quiet: bool) -> list[File]:
    """Upload each file (once, however often it is named), with a progress bar each."""
    uploaded: dict[Path, File] = {}
    with _transfers(quiet) as progress:
        for path in paths:
            key = path.resolve()
            if key not in uploaded:
                uploaded[key] = api.upload(path, progress=_progress_of(progress, path.name, path.stat().st_size))
    return [uploaded[path.resolve()] for path in paths]


def _writable_directory(directory: Path, option: str) -> None:
    """Make the directory results go to now, not after a long wait: a path that cannot be one is a usage error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"{directory}: {exc.strerror or exc}", param_hint=option) from None


def _local_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.is_file() else None


def _calculation_or_run(api: Client, object_id: str) -> Calculation | WorkflowRun:
    """A calculation, or else a workflow run, with this id."""
    try:
        return api.get_calculation(object_id)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
    try:
        return api.get_workflow_run(object_id)
    except ApiError as exc:
        if exc.status_code == 404:
            raise ApiError(404, f"no calculation or workflow run {object_id} is yours") from None
        raise


def _is_run(item: Calculation | WorkflowRun) -> TypeIs[WorkflowRun]:
    return "workflow" in item


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


def _wait_calculation(api: Client, calculation_id: str, quiet: bool, timeout: float | None) -> Calculation:
    if quiet:
        return api.wait_calculation(calculation_id, timeout_seconds=timeout)
    started = time.monotonic()
    with err.status(f"{calculation_id}: submitted") as status:

        def show(calc: Calculation) -> None:
            status.update(f"[bold]{calc['tool']}[/] {calculation_id}: {_styled(calc['state'])} ({_elapsed(started)})")

        calc = api.wait_calculation(calculation_id, timeout_seconds=timeout, on_update=show)
    err.print(f"[bold]{calc['tool']}[/] {calculation_id}: {_styled(calc['state'])} after {_elapsed(started)}")
    return calc


def _id_table(*columns: str) -> Table:
    """A table whose first column holds ids, never cut (they are what one copies into the next command)."""
    table = Table(show_edge=False)
    table.add_column(columns[0], no_wrap=True, min_width=36)
    for column in columns[1:]:
        table.add_column(column)
    return table


def _when(timestamp: str | None) -> str:
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def _run_table(run: WorkflowRun, elapsed: str | None = None) -> Table:
    title = f"{run['workflow']} {run['id']}: {_styled(run['state'])}" + (f" ({elapsed})" if elapsed else "")
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("step", "tool", "state"):
        table.add_column(column)
    table.add_column("calculation", no_wrap=True, min_width=36)
    mapped = {
        name for name in (step["name"] for step in run["steps"]) if sum(s["name"] == name for s in run["steps"]) > 1
    }
    for step in run["steps"]:
        name = f"{step['name']}[{step['index']}]" if step["name"] in mapped or step["index"] else step["name"]
        cached = " (cached)" if step["cached_from"] else ""
        table.add_row(escape(name), step["tool"], _styled(step["state"]) + cached, step["calculation_id"])
    return table


def _wait_run(api: Client, run_id: str, quiet: bool, timeout: float | None) -> WorkflowRun:
    if quiet:
        return api.wait_workflow_run(run_id, timeout_seconds=timeout)
    started = time.monotonic()
    with Live(console=err, refresh_per_second=4, transient=True) as live:

        def show(run: WorkflowRun) -> None:
            live.update(_run_table(run, _elapsed(started)))

        run = api.wait_workflow_run(run_id, timeout_seconds=timeout, on_update=show)
    err.print(_run_table(run, f"after {_elapsed(started)}"))
    return run


def _finish(state: str, error: str, quiet: bool) -> NoReturn:
    if state != "COMPLETE" and error and not quiet:
        err.print(f"[red]{state}[/]: {escape(error)}")
    raise typer.Exit(STATE_EXIT_CODES.get(state, ExitCode.OK))


def _show_calculation(calc: Calculation) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("calculation", calc["id"])
    grid.add_row("tool", f"{calc['tool']} {calc['tool_version']}")
    grid.add_row("state", _styled(calc["state"]) + (f" (from {calc['cached_from']})" if calc["cached_from"] else ""))
    grid.add_row("backend", calc["backend"] or "-")
    if calc["workflow_run"]:
        grid.add_row("workflow run", f"{calc['workflow_run']} (step {calc['step']}[{calc['step_index'] or 0}])")
    grid.add_row("attempts", str(calc["attempts"]))
    grid.add_row("params", escape(json.dumps(calc["params"])))
    for role, file_id in sorted(calc["inputs"].items()):
        grid.add_row(f"input {role}", file_id or "(deleted)")
    for role, file_ids in sorted(calc["outputs"].items()):
        grid.add_row(f"output {role}", " ".join(file_ids))
    attempts = calc["provenance"].get("attempts") or []
    if attempts and attempts[-1].get("argv"):
        grid.add_row("argv", escape(shlex.join(attempts[-1]["argv"])))
    if attempts and attempts[-1].get("exit_code") is not None:
        grid.add_row("exit code", str(attempts[-1]["exit_code"]))
    grid.add_row("created", _when(calc["created_at"]))
    grid.add_row("finished", _when(calc["finished_at"]))
    if calc["error"]:
        grid.add_row("error", f"[red]{escape(calc['error'])}[/]")
    out.print(grid)


def _show_run(run: WorkflowRun) -> None:
    out.print(_run_table(run))
    if run["error"]:
        out.print(f"[red]error[/]: {escape(run['error'])}")


# -- commands ----------------------------------------------------------------------------------


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
        _print_json({"url": url, "config": str(path)})
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
    with _client() as api:
        if name is None:
            summaries = api.list_tools()
            if as_json:
                return _print_json(summaries)
            table = Table("tool", "version", "description", show_edge=False)
            for summary in summaries:
                table.add_row(summary["name"], summary["version"], escape(summary["description"]))
            return out.print(table)
        tool = api.get_tool(name)
    if as_json:
        return _print_json(tool)
    out.print(f"[bold]{tool['name']}[/] {tool['version']}: {escape(tool['description'])}")
    out.print(f"backends: {', '.join(tool['backends'])} (default {tool['default_backend']})")
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
    with _client() as api:
        uploaded = _upload_paths(api, files, quiet=as_json)
    if as_json:
        return _print_json(uploaded)
    table = _id_table("id", "name", "size", "sha256")
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
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a tool: upload local inputs, submit, and (with --wait or --download) wait for the end.

    Exit code: 0 COMPLETE, 3 EXECUTOR_ERROR, 4 SYSTEM_ERROR, 5 CANCELED (when waiting).
    """
    local: dict[str, Path] = {}
    file_ids: dict[str, str] = {}
    for pair in inputs or []:
        role, value = _split_pair(pair, "--input")
        if role in local or role in file_ids:
            raise typer.BadParameter(f"{role!r} is given twice (a role takes one file)", param_hint="--input")
        if (path := _local_file(value)) is not None:
            local[role] = path
        elif _is_file_id(value):
            file_ids[role] = value
        else:
            raise typer.BadParameter(f"{pair!r}: {value!r} is neither a local file nor a file id", param_hint="--input")
    submitted_params = parse_params(params)
    if download is not None:
        _writable_directory(download, "--download")
    with _client() as api:
        # a wrong tool or role is refused before any upload (the server would refuse it after)
        known = {role["name"] for role in api.get_tool(tool)["inputs"]}
        if unknown := sorted((set(local) | set(file_ids)) - known):
            raise typer.BadParameter(
                f"{tool} has no input role {', '.join(map(repr, unknown))} (it takes {', '.join(sorted(known))})",
                param_hint="--input",
            )
        roles = list(local)
        for role, file in zip(roles, _upload_paths(api, [local[role] for role in roles], quiet=as_json), strict=True):
            file_ids[role] = file["id"]
        calc = api.submit(tool, file_ids, submitted_params, backend=backend, use_cache=not no_cache)
        if not as_json:
            cached = " (answered from an identical calculation)" if calc["cache_hit"] else ""
            err.print(f"submitted [bold]{tool}[/] {calc['id']}: {_styled(calc['state'])}{cached}")
        if not (wait or download):
            if as_json:
                return _print_json(calc)
            out.print(calc["id"])
            return None
        try:
            calc = _wait_calculation(api, calc["id"], as_json, timeout)
        except KeyboardInterrupt:
            err.print(f"interrupted: {calc['id']} goes on (`emgapi cancel {calc['id']}` stops it)")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        downloaded: list[tuple[str, Path]] = []
        if download is not None and calc["state"] == "COMPLETE":
            with _transfers(as_json) as progress:
                downloaded = api.download_outputs(
                    calc, download, progress=lambda file: _progress_of(progress, file["name"], file["size"])
                )
    if as_json:
        result: dict[str, Any] = dict(calc)
        if download is not None:
            result["downloaded"] = [{"role": role, "path": str(path)} for role, path in downloaded]
        _print_json(result)
    else:
        _show_calculation(calc)
        for role, path in downloaded:
            out.print(f"{role}: {escape(str(path))}")
    _finish(calc["state"], calc["error"], as_json)


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
    with _client() as api:
        calcs = api.list_calculations(state=state.upper() if state else None, tool=tool, limit=limit)
    if as_json:
        return _print_json(calcs)
    table = _id_table("id", "tool", "state", "backend", "created", "workflow step")
    for calc in calcs:
        step = f"{calc['step']}[{calc['step_index'] or 0}]" if calc["workflow_run"] else ""
        table.add_row(
            calc["id"], calc["tool"], _styled(calc["state"]), calc["backend"], _when(calc["created_at"]), step
        )
    out.print(table)


@app.command()
def show(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation or a workflow run.")],
    as_json: JsonOption = False,
) -> None:
    """Show a calculation (state, inputs, outputs, provenance) or a workflow run (its steps)."""
    with _client() as api:
        item = _calculation_or_run(api, _check_id(object_id))
    if as_json:
        _print_json(item)
    elif _is_run(item):
        _show_run(item)
    else:
        _show_calculation(item)


@app.command()
def wait(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation or a workflow run.")],
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until a calculation or workflow run ends; the exit code says how it ended."""
    with _client() as api:
        item = _calculation_or_run(api, _check_id(object_id))
        try:
            if _is_run(item):
                item = _wait_run(api, object_id, as_json, timeout)
            else:
                item = _wait_calculation(api, object_id, as_json, timeout)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        _print_json(item)
    _finish(item["state"], item["error"], as_json)


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
    exit code is the calculation's end state's (0 COMPLETE, 3, 4, 5).
    """
    if stream not in (None, "stdout", "stderr"):
        raise typer.BadParameter("stdout or stderr", param_hint="--stream")
    streams = cast(tuple[LogStream, ...], ("stdout", "stderr") if stream is None else (stream,))
    targets = {"stdout": sys.stdout, "stderr": sys.stdout if stream else sys.stderr}
    with _client() as api:
        _check_id(calculation_id)
        if not follow:
            tails = api.logs(calculation_id)
            if as_json:
                return _print_json(tails)
            for name in streams:
                targets[name].write(tails[name])
            if tails["truncated"]:
                err.print("[dim](only the end of a long log is shown; --follow prints all of it)[/]")
            return None
        try:
            for name, text in api.follow_logs(calculation_id, streams):
                if as_json:
                    _print_json_line({"stream": name, "data": text})
                else:
                    targets[name].write(text)
                    targets[name].flush()
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        calc = api.get_calculation(calculation_id)
    _finish(calc["state"], "", True)


def _print_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


@app.command()
def cancel(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation or a workflow run.")],
    as_json: JsonOption = False,
) -> None:
    """Cancel a calculation, or a workflow run and every step of it in flight."""
    with _client() as api:
        item = _calculation_or_run(api, _check_id(object_id))
        result: Calculation | WorkflowRun = (
            api.cancel_workflow_run(object_id) if _is_run(item) else api.cancel_calculation(object_id)
        )
    if as_json:
        return _print_json(result)
    err.print(f"{object_id}: {_styled(result['state'])}")


@app.command("download")
def download_command(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation (its outputs) or a file.")],
    directory: Annotated[
        Path, typer.Option("--dir", "-d", file_okay=False, metavar="DIR", help="Into this directory.")
    ] = Path(),
    as_json: JsonOption = False,
) -> None:
    """Download a calculation's outputs, or one file, each under its own name (sha256 checked)."""
    with _client() as api:
        _check_id(object_id)
        try:
            calc: Calculation | None = api.get_calculation(object_id)
        except ApiError as exc:
            if exc.status_code != 404:
                raise
            calc = None
        with _transfers(as_json) as progress:
            if calc is not None:
                if calc["state"] != "COMPLETE":
                    raise ApiError(409, f"calculation {object_id} is {calc['state']}: it has no outputs to download")
                saved = api.download_outputs(
                    calc, directory, progress=lambda file: _progress_of(progress, file["name"], file["size"])
                )
                downloaded = [{"role": role, "path": str(path)} for role, path in saved]
            else:
                try:
                    file = api.get_file(object_id)
                except ApiError as exc:
                    if exc.status_code == 404:
                        raise ApiError(404, f"no calculation or file {object_id} is yours") from None
                    raise
                path = api.download(file, directory, progress=_progress_of(progress, file["name"], file["size"]))
                downloaded = [{"file": file["id"], "path": str(path)}]
    if as_json:
        return _print_json(downloaded)
    for entry in downloaded:
        out.print(escape(entry["path"]))


# -- workflows and pipelines -------------------------------------------------------------------


@workflows_app.command("ls")
def list_workflows(as_json: JsonOption = False) -> None:
    """The deployed workflows and their parameters."""
    with _client() as api:
        workflows = api.list_workflows()
    if as_json:
        return _print_json(workflows)
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
    with _client() as api:
        runs = api.list_workflow_runs(state=state.upper() if state else None, workflow=workflow, limit=limit)
    if as_json:
        return _print_json(runs)
    table = _id_table("id", "workflow", "state", "created", "error")
    for item in runs:
        table.add_row(
            item["id"], item["workflow"], _styled(item["state"]), _when(item["created_at"]), escape(item["error"])
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
        path = _local_file(value) if isinstance(value, str) and not _is_file_id(value) else None
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
            ids[path.resolve()] = _upload_paths(api, [path], quiet)[0]["id"]
        return ids[path.resolve()]

    return upload


def _launched(api: Client, run: WorkflowRun, wait: bool, timeout: float | None, as_json: bool) -> None:
    if not as_json:
        err.print(f"launched [bold]{run['workflow']}[/] {run['id']}: {_styled(run['state'])}")
    if not wait:
        if as_json:
            return _print_json(run)
        out.print(run["id"])
        return None
    try:
        run = _wait_run(api, run["id"], as_json, timeout)
    except KeyboardInterrupt:
        err.print(f"interrupted: {run['id']} goes on (`emgapi cancel {run['id']}` stops it)")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        _print_json(run)
    _finish(run["state"], run["error"], as_json)


@workflows_app.command("run")
def run_workflow(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A deployed workflow (`emgapi workflows ls`).")],
    params: ParamOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show its steps live until it ends.")] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Launch a workflow run. A parameter that takes a file id may be given a local path: the file is
    uploaded and its id passed (a list parameter may be given once or repeated).

    Exit code with --wait: 0 COMPLETE, 3 EXECUTOR_ERROR, 4 SYSTEM_ERROR, 5 CANCELED.
    """
    values = parse_params(params)
    with _client() as api:
        schema = api.get_workflow(name)["parameters_schema"]
        for key, value in values.items():
            node = _resolve_ref(schema.get("properties", {}).get(key, {}), schema)
            if node.get("type") == "array" and not isinstance(value, list):
                values[key] = [value]
        values = upload_marked_files(schema, values, schema, _uploader(api, as_json))
        _launched(api, api.run_workflow(name, values), wait, timeout, as_json)


def upload_pipeline_files(pipeline: Mapping[str, Any], base: Path, upload: Callable[[Path], str]) -> dict[str, Any]:
    """The pipeline with each `file:<path>` input naming a local file (relative to `base`) replaced by
    `file:<id>` of its upload; `file:<id>`s and other steps' outputs are left as they are."""

    def replace(reference: Any, where: str) -> Any:
        if isinstance(reference, list):
            return [replace(item, where) for item in reference]
        if isinstance(reference, dict):
            return {key: replace(item, where) for key, item in reference.items()}
        if not isinstance(reference, str) or not reference.startswith("file:"):
            return reference
        target = reference.removeprefix("file:")
        if _is_file_id(target):
            return reference
        path = (base / Path(target).expanduser()).resolve()
        if not path.is_file():
            raise typer.BadParameter(f"{where}: {target!r} is neither a file id nor a local file", param_hint="FILE")
        return f"file:{upload(path)}"

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
    wait: Annotated[bool, typer.Option("--wait", help="Show its steps live until it ends.")] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a pipeline, a DAG of tools given as JSON: the built-in `pipeline` workflow's parameters.

    An input is `file:<id>`, `<step>.<output role>`, or {"each": [...]} of those; `file:<path>` of a
    local file (relative to FILE's directory) uploads it and passes its id.
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
    with _client() as api:
        params = upload_pipeline_files(pipeline, base, _uploader(api, as_json))
        _launched(api, api.run_workflow("pipeline", params), wait, timeout, as_json)


# -- entry point -------------------------------------------------------------------------------

ERROR_EXIT_CODES: tuple[tuple[type[Exception], ExitCode], ...] = (
    (ApiError, ExitCode.API_ERROR),
    (ApiUnreachable, ExitCode.UNREACHABLE),
    (ChecksumMismatch, ExitCode.CHECKSUM_MISMATCH),
    (WaitTimeout, ExitCode.WAIT_TIMEOUT),
    (ConfigError, ExitCode.USAGE),
    (InvalidUrl, ExitCode.USAGE),
    (EmgapiError, ExitCode.API_ERROR),
)


def exit_code_of(error: Exception) -> ExitCode:
    return next(code for kind, code in ERROR_EXIT_CODES if isinstance(error, kind))


def main() -> None:
    """The `emgapi` console script: the commands, with the client's errors as messages and exit codes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a tool's log may hold what this terminal cannot show
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except (EmgapiError, ConfigError) as exc:
        label: Literal["error", "timeout"] = "timeout" if isinstance(exc, WaitTimeout) else "error"
        status = f" ({exc.status_code})" if isinstance(exc, ApiError) else ""
        err.print(f"[red]{label}{status}[/]: {escape(str(exc))}")
        sys.exit(exit_code_of(exc))
    except OSError as exc:  # a local file or directory that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"[red]error[/]: {escape(exc.strerror or str(exc))}{escape(str(where))}")
        sys.exit(ExitCode.USAGE)
