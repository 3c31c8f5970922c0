"""What the commands share: the client from the stored login, argument parsing, uploads with progress,
waiting, and tables."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

import typer
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from emgapi_client.client import Client
from emgapi_client.config import (
    ConfigError,
    current_credentials,
)
from emgapi_client.errors import ApiError
from emgapi_client.types import Calculation, File, ProgressCallback, WorkflowRun

if TYPE_CHECKING:
    from typing_extensions import TypeIs


from emgapi_client.cli.app import (
    STATE_EXIT_CODES,
    STATE_STYLES,
    ExitCode,
    err,
    out,
    visible,
)

# -- helpers -----------------------------------------------------------------------------------


def logged_in_client() -> Client:
    credentials = current_credentials()
    if not credentials.url or not credentials.token:
        raise ConfigError("not logged in: run `emgapi login`, or set EMGAPI_URL and EMGAPI_TOKEN")
    return Client(credentials.url, credentials.token)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def is_file_id(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def check_id(value: str) -> str:
    if not is_file_id(value):
        raise typer.BadParameter(f"{value!r} is not an id (a UUID)", param_hint="ID")
    return value


def styled(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'dim')}]{state}[/]"


def split_pair(text: str, option: str) -> tuple[str, str]:
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
        name, text = split_pair(pair, "--param")
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
def transfer_progress(quiet: bool) -> Iterator[Progress]:
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


def progress_of(progress: Progress, description: str, total: int) -> ProgressCallback:
    task = progress.add_task(escape(visible(description)), total=total)  # rendered as markup, not by the console

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


def upload_paths(api: Client, paths: list[Path], quiet: bool) -> list[File]:
    """Upload each file (once, however often it is named), with a progress bar each."""
    uploaded: dict[Path, File] = {}
    with transfer_progress(quiet) as progress:
        for path in paths:
            key = path.resolve()
            if key not in uploaded:
                uploaded[key] = api.upload(path, progress=progress_of(progress, path.name, path.stat().st_size))
    return [uploaded[path.resolve()] for path in paths]


def writable_directory(directory: Path, option: str) -> None:
    """Make the directory results go to now, not after a long wait: a path that cannot be one is a usage error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"{directory}: {exc.strerror or exc}", param_hint=option) from None


def local_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.is_file() else None


def calculation_or_run(api: Client, object_id: str) -> Calculation | WorkflowRun:
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


def is_run(item: Calculation | WorkflowRun) -> TypeIs[WorkflowRun]:
    return "workflow" in item


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


def wait_calculation(api: Client, calculation_id: str, quiet: bool, timeout: float | None) -> Calculation:
    if quiet:
        return api.wait_calculation(calculation_id, timeout_seconds=timeout)
    started = time.monotonic()
    with err.status(f"{calculation_id}: submitted") as status:

        def show(calc: Calculation) -> None:
            status.update(f"[bold]{calc['tool']}[/] {calculation_id}: {styled(calc['state'])} ({_elapsed(started)})")

        calc = api.wait_calculation(calculation_id, timeout_seconds=timeout, on_update=show)
    err.print(f"[bold]{calc['tool']}[/] {calculation_id}: {styled(calc['state'])} after {_elapsed(started)}")
    return calc


def id_table(*columns: str) -> Table:
    """A table whose first column holds ids, never cut (they are what one copies into the next command)."""
    table = Table(show_edge=False)
    table.add_column(columns[0], no_wrap=True, min_width=36)
    for column in columns[1:]:
        table.add_column(column)
    return table


def when(timestamp: str | None) -> str:
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def _run_table(run: WorkflowRun, elapsed: str | None = None) -> Table:
    title = f"{run['workflow']} {run['id']}: {styled(run['state'])}" + (f" ({elapsed})" if elapsed else "")
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
        table.add_row(escape(name), step["tool"], styled(step["state"]) + cached, step["calculation_id"])
    return table


def wait_run(api: Client, run_id: str, quiet: bool, timeout: float | None) -> WorkflowRun:
    if quiet:
        return api.wait_workflow_run(run_id, timeout_seconds=timeout)
    started = time.monotonic()
    with Live(console=err, refresh_per_second=4, transient=True) as live:

        def show(run: WorkflowRun) -> None:
            live.update(_run_table(run, _elapsed(started)))

        run = api.wait_workflow_run(run_id, timeout_seconds=timeout, on_update=show)
    err.print(_run_table(run, f"after {_elapsed(started)}"))
    return run


def finish(state: str, error: str, quiet: bool) -> NoReturn:
    if state != "COMPLETE" and error and not quiet:
        err.print(f"[red]{state}[/]: {escape(error)}")
    raise typer.Exit(STATE_EXIT_CODES.get(state, ExitCode.OK))


def show_calculation(calc: Calculation) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("calculation", calc["id"])
    grid.add_row("tool", f"{calc['tool']} {calc['tool_version']}")
    grid.add_row("state", styled(calc["state"]) + (f" (from {calc['cached_from']})" if calc["cached_from"] else ""))
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
    grid.add_row("created", when(calc["created_at"]))
    grid.add_row("finished", when(calc["finished_at"]))
    if calc["error"]:
        grid.add_row("error", f"[red]{escape(calc['error'])}[/]")
    out.print(grid)


def show_run(run: WorkflowRun) -> None:
    out.print(_run_table(run))
    if run["error"]:
        out.print(f"[red]error[/]: {escape(run['error'])}")
