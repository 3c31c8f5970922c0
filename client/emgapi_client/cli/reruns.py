"""`emgapi rerun`: a calculation or workflow run run again to verify it, and its verdict."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from emgapi_client.cli.app import STATE_EXIT_CODES, ExitCode, JsonOption, TimeoutOption, app, err, out
from emgapi_client.cli.common import (
    calculation_or_run,
    check_id,
    finish,
    is_run,
    logged_in_client,
    print_json,
    styled,
    wait_calculation,
    wait_run,
)
from emgapi_client.types import Calculation, OutputVerdict, Verdict, WorkflowRun

OUTCOME_STYLES = {"identical": "green", "differs": "yellow", "different": "red", "not reproduced": "red"}


@app.command()
def rerun(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="Your ended calculation or COMPLETE workflow run.")],
    verify: Annotated[
        bool, typer.Option("--verify", help="Wait for the rerun to end and print its verdict (implies --wait).")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the rerun to end; exit with its state's code.")
    ] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a calculation or workflow run again, as the server ran it: the same tool versions and image
    digests, the same inputs and parameters, never from the cache. The new run's id goes to stdout.

    With --verify, its verdict: for each output (a workflow run's: for each step) identical, or what
    differs. The exit code is then 0 if identical, or if only outputs the tool declares may differ did
    (nondeterministic, timestamps); 10 if another output differs or is missing or extra; 3, 4 or 5 if
    the rerun did not complete.
    """
    with logged_in_client() as api:
        item = calculation_or_run(api, check_id(object_id))
        new: Calculation | WorkflowRun = (
            api.rerun_workflow_run(object_id) if is_run(item) else api.rerun_calculation(object_id)
        )
        if not (verify or wait):
            if as_json:
                return print_json(new)
            out.print(new["id"])
            err.print(f"{object_id}: rerun as {new['id']} ({styled(new['state'])})")
            return None
        try:
            if is_run(new):
                new = wait_run(api, new["id"], as_json, timeout)
            else:
                new = wait_calculation(api, new["id"], as_json, timeout)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        print_json(new)
    if not verify:
        finish(new, as_json)
    verdict = new.get("verdict")
    if not as_json:
        show_verdict(new["id"], verdict)
    raise typer.Exit(verdict_exit_code(new, verdict))


def verdict_exit_code(item: Calculation | WorkflowRun, verdict: Verdict | None) -> ExitCode:
    """0 for identical or declared differences, 10 for an undeclared one, the state's if it did not end COMPLETE."""
    if item["state"] != "COMPLETE":
        return STATE_EXIT_CODES.get(item["state"], ExitCode.API_ERROR)
    if verdict is None or verdict["outcome"] in ("different", "not reproduced"):
        return ExitCode.NOT_REPRODUCED
    return ExitCode.OK


def show_verdict(run_id: str, verdict: Verdict | None) -> None:
    """The verdict's outcome and summary, then a table of what was compared."""
    if verdict is None:
        err.print(f"{run_id}: [red]no verdict[/] (the run it repeats had no outputs to compare)")
        return
    style = OUTCOME_STYLES.get(verdict["outcome"], "white")
    out.print(f"[{style}]{escape(verdict['summary'])}[/]")  # it begins with the outcome
    table = Table(show_edge=False, pad_edge=False)
    if verdict["steps"]:
        for column in ("step", "tool", "output", "verdict", "size then", "size now"):
            table.add_column(column)
        for step in verdict["steps"]:
            label = f"{step['step']}[{step['index']}]"
            if not step["outputs"]:
                table.add_row(escape(label), escape(step["tool"]), "-", _styled(step["outcome"]), "", "")
            for output in step["outputs"]:
                table.add_row(escape(label), escape(step["tool"]), *_output_cells(output))
    elif verdict["outputs"]:
        for column in ("output", "verdict", "size then", "size now"):
            table.add_column(column)
        for output in verdict["outputs"]:
            table.add_row(*_output_cells(output))
    else:
        return
    out.print(table)


def _styled(outcome: str, note: str = "") -> str:
    style = {"expected to differ": "yellow", "missing": "red", "extra": "red"}.get(
        outcome, OUTCOME_STYLES.get(outcome, "white")
    )
    return f"[{style}]{escape(outcome)}[/]" + (f" ({escape(note)})" if note else "")


def _output_cells(output: OutputVerdict) -> tuple[str, str, str, str]:
    then, now = output["expected_size"], output["actual_size"]
    return (
        escape(f"{output['role']}/{output['name']}"),
        _styled(output["status"], output["note"]),
        "-" if then is None else str(then),
        "-" if now is None else str(now),
    )
