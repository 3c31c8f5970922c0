"""What the commands share: the client from the stored login, argument parsing, uploads with progress,
waiting, and tables."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
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
from emgapi_client.types import TERMINAL_STATES, Calculation, File, Notify, ProgressCallback, Step, WorkflowRun

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


def notify_of(url: str | None, states: list[str] | None) -> Notify | None:
    """The request's `notify` from --notify and --notify-on (the server checks both: a 422 says why)."""
    if url is None:
        if states:
            raise typer.BadParameter("--notify-on needs --notify URL", param_hint="--notify-on")
        return None
    notify: Notify = {"url": url}
    if states:
        notify["events"] = [state.upper() for state in states]  # type: ignore[misc]
    return notify


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


def _waited(started: float) -> str:
    return f"waiting {time.monotonic() - started:.0f} s"


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)  # the API's are ISO 8601 with their offset (Z is UTC)


def when(timestamp: str | None) -> str:
    """A time from the API in the local time zone, with its offset: `2026-12-04 13:05:09+01:00`."""
    if not timestamp:
        return "-"
    return _moment(timestamp).astimezone().isoformat(sep=" ", timespec="seconds")


def seconds_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def duration(item: Calculation | WorkflowRun | Step) -> str:
    """How long it ran by its own times (started_at → finished_at), not how long anyone waited for it."""
    started, finished = item.get("started_at"), item.get("finished_at")
    if not started:
        return "never started" if finished else "not started"
    if not finished:
        return "running"
    return seconds_text((_moment(finished) - _moment(started)).total_seconds())


def canceled_note(item: Calculation | WorkflowRun | Step) -> str:
    """`CANCELED by alice at <time>` (CANCELING while it stops), or "" if no one asked it to stop."""
    by = item.get("canceled_by")
    if not by or item["state"] not in ("CANCELING", "CANCELED"):
        return ""
    return f"{item['state']} by {by} at {when(item.get('canceled_at'))}"


def relative_argv(argv: list[str], workdir: str) -> list[str]:
    """An argv with the paths in its work directory relative to it (`out/proteins.faa`), and those
    beside it too (`../inputs/contigs/contigs.fna`): the server's own directories say nothing to a
    user, and make a command line hard to read."""
    work = PurePosixPath(workdir)
    if len(work.parts) < 3:  # `/` or `/work`: too short to tell a path in it from any other
        return argv
    here, parent = re.escape(str(work)), re.escape(str(work.parent))
    inside = re.compile(rf"(?P<in>{here}/(?=[^/]))|(?P<at>{here}/*$)|(?P<beside>{parent}/)")
    replacements = {"in": "", "at": ".", "beside": "../"}
    return [inside.sub(lambda match: replacements[str(match.lastgroup)], word) for word in argv]


def wait_calculation(api: Client, calculation_id: str, quiet: bool, timeout: float | None) -> Calculation:
    if quiet:
        return api.wait_calculation(calculation_id, timeout_seconds=timeout)
    started = time.monotonic()
    with err.status(f"{calculation_id}: submitted") as status:

        def show(calc: Calculation) -> None:
            status.update(f"[bold]{calc['tool']}[/] {calculation_id}: {styled(calc['state'])} ({_waited(started)})")

        calc = api.wait_calculation(calculation_id, timeout_seconds=timeout, on_update=show)
    err.print(f"[bold]{calc['tool']}[/] {calculation_id}: {styled(calc['state'])} ({_ran(calc)})")
    return calc


def _ran(item: Calculation | WorkflowRun) -> str:
    ran = duration(item)
    return f"in {ran}" if ran[0].isdigit() else ran


def id_table(*columns: str) -> Table:
    """A table whose first column holds ids, never cut (they are what one copies into the next command)."""
    table = Table(show_edge=False)
    table.add_column(columns[0], no_wrap=True, min_width=36)
    for column in columns[1:]:
        table.add_column(column)
    return table


def _mapped(run: WorkflowRun) -> set[str]:
    """The steps called more than once (a map's elements), whose index is shown."""
    everything = [*run["steps"], *run.get("pending_steps", [])]
    return {
        step["name"] for step in everything if step["index"] or sum(s["name"] == step["name"] for s in everything) > 1
    }


def _step_label(name: str, index: int, mapped: set[str]) -> str:
    return escape(f"{name}[{index}]" if name in mapped else name)


def _run_table(run: WorkflowRun, caption: str | None = None) -> Table:
    """Every step: those created (queued, running, done), then those its plan still holds (pending)."""
    title = f"{run['workflow']} {run['id']}: {styled(run['state'])}" + (f" ({caption})" if caption else "")
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("step", "tool", "state", "ran"):
        table.add_column(column)
    table.add_column("calculation", no_wrap=True, min_width=36)
    mapped = _mapped(run)
    for step in run["steps"]:
        cached = " (cached)" if step["cached_from"] else ""
        state = styled(step["state"]) + cached
        if canceled_note(step):
            state += f" [dim]by {escape(step.get('canceled_by') or '')}[/]"
        ran = duration(step) if "started_at" in step else ""
        table.add_row(
            _step_label(step["name"], step["index"], mapped), step["tool"], state, ran, step["calculation_id"]
        )
    pending = "[dim]PENDING[/]" if run["state"] not in TERMINAL_STATES else "[dim]never started[/]"
    for planned in run.get("pending_steps", []):
        table.add_row(_step_label(planned["name"], planned["index"], mapped), planned["tool"], pending, "", "")
    return table


def wait_run(api: Client, run_id: str, quiet: bool, timeout: float | None) -> WorkflowRun:
    if quiet:
        return api.wait_workflow_run(run_id, timeout_seconds=timeout)
    started = time.monotonic()
    with Live(console=err, refresh_per_second=4, transient=True) as live:

        def show(run: WorkflowRun) -> None:
            live.update(_run_table(run, _waited(started)))

        run = api.wait_workflow_run(run_id, timeout_seconds=timeout, on_update=show)
    err.print(_run_table(run, _ran(run)))
    return run


def finish(item: Calculation | WorkflowRun, quiet: bool) -> NoReturn:
    """Exit with the code of how it ended, saying why it did not complete (who canceled it, its error)."""
    if not quiet and item["state"] != "COMPLETE":
        if note := canceled_note(item):
            err.print(f"[yellow]{escape(note)}[/]")
        elif item["error"]:
            err.print(f"[red]{item['state']}[/]: {escape(item['error'])}")
    raise typer.Exit(STATE_EXIT_CODES.get(item["state"], ExitCode.OK))


def _times(grid: Table, item: Calculation | WorkflowRun) -> None:
    grid.add_row("created", when(item["created_at"]))
    grid.add_row("started", when(item["started_at"]))
    grid.add_row("finished", when(item["finished_at"]))
    grid.add_row("ran", duration(item))
    if note := canceled_note(item):
        grid.add_row("canceled", f"[yellow]{escape(note)}[/]")


def described_resources(resources: Mapping[str, int | None], prefix: str = "") -> str:
    """ "2 CPUs, 4096 MB, 600 s, 1 GPU": the values named `<prefix>cpus`, … (a GPU only if any)."""
    cpus, gpus = resources.get(f"{prefix}cpus"), resources.get(f"{prefix}gpus") or 0
    words = [
        f"{cpus} CPU{'s' * (cpus != 1)}",
        f"{resources.get(f'{prefix}memory_mb')} MB",
        f"{resources.get(f'{prefix}time_limit_seconds')} s",
    ]
    if gpus:
        words.append(f"{gpus} GPU{'s' * (gpus != 1)}")
    return ", ".join(words)


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
    if granted := calc.get("resources"):
        grid.add_row("resources", described_resources(granted))
    grid.add_row("params", escape(json.dumps(calc["params"])))
    for role, file_id in sorted(calc["inputs"].items()):
        grid.add_row(f"input {role}", file_id or "(deleted)")
    for role, file_ids in sorted(calc["outputs"].items()):
        grid.add_row(f"output {role}", " ".join(file_ids))
    attempts = calc["provenance"].get("attempts") or []
    if attempts and attempts[-1].get("argv"):
        workdir = attempts[-1].get("workdir") or ""
        grid.add_row("argv", escape(shlex.join(relative_argv(attempts[-1]["argv"], workdir))))
        if workdir:
            grid.add_row("work dir", escape(workdir) + " [dim](on the server: the argv's paths are relative to it)[/]")
    if attempts and attempts[-1].get("exit_code") is not None:
        grid.add_row("exit code", str(attempts[-1]["exit_code"]))
    _times(grid, calc)
    if calc["error"]:
        grid.add_row("error", f"[red]{escape(calc['error'])}[/]")
    out.print(grid)


def show_run(run: WorkflowRun) -> None:
    """Its steps, their outputs, what its flow returned, its times, and why it did not complete."""
    out.print(_run_table(run))
    mapped = _mapped(run)
    outputs = id_table("file", "step", "role", "name", "size")
    for step in run["steps"]:
        for file in step.get("outputs", []):
            label = _step_label(step["name"], step["index"], mapped)
            outputs.add_row(file["id"], label, escape(file["output_role"]), escape(file["name"]), str(file["size"]))
    if outputs.row_count:
        out.print(outputs)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    _times(grid, run)
    if "result" in run and run["state"] == "COMPLETE":
        result = run["result"]
        grid.add_row("result", escape(json.dumps(result, indent=2)) if result is not None else "-")
    if run["error"]:
        grid.add_row("error" if run["state"] != "COMPLETE" else "note", f"[red]{escape(run['error'])}[/]")
    out.print(grid)
