"""`emgapi export`: a calculation's or a workflow run's record as an RO-Crate zip, checked on arrival;
`emgapi import`: such a crate run here as yours, and its verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from emgapi_client.cli.app import ExitCode, JsonOption, TimeoutOption, app, err, out
from emgapi_client.cli.common import (
    calculation_or_run,
    check_id,
    is_run,
    logged_in_client,
    print_json,
    styled,
    wait_calculation,
    wait_run,
)
from emgapi_client.cli.reruns import show_verdict, verdict_exit_code
from emgapi_client.crates import CrateData, CrateKind
from emgapi_client.types import Calculation, WorkflowRun


@app.command("export")
def export_command(
    object_id: Annotated[str, typer.Argument(metavar="ID", help="A calculation (or TES task) or a workflow run.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, metavar="FILE", help="Write the zip here (default: ID.crate.zip)."
        ),
    ] = None,
    data: Annotated[
        CrateData,
        typer.Option(
            "--data",
            help="The data files the crate holds: none, small (up to the server's limit, the default) or all; "
            "those left out are listed with their sha256, size and download URL.",
        ),
    ] = "small",
    as_json: JsonOption = False,
) -> None:
    """Export a run as an RO-Crate (Workflow Run RO-Crate 0.5): a zip with ro-crate-metadata.json and
    its data files, each file's sha256 checked against the metadata once it arrived."""
    with logged_in_client() as api:
        item = calculation_or_run(api, check_id(object_id))
        kind: CrateKind = "workflow-run" if is_run(item) else "calculation"
        target = output if output is not None else Path(f"{object_id}.crate.zip")
        summary = api.download_crate(kind, object_id, target, data=data)
    if as_json:
        return print_json(
            {
                "path": str(summary.path),
                "kind": kind,
                "held": summary.held,
                "held_bytes": summary.held_bytes,
                "listed": summary.listed,
                "listed_bytes": summary.listed_bytes,
            }
        )
    out.print(escape(str(summary.path)))
    left_out = f"; {summary.listed} listed by URL only ({summary.listed_bytes} bytes)" if summary.listed else ""
    out.print(f"{kind} {object_id}: {summary.held} data files ({summary.held_bytes} bytes), sha256 checked{left_out}")


@app.command("import")
def import_command(
    crate: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", exists=True, dir_okay=False, readable=True, help="A crate's zip (from `emgapi export`)."
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run to end, then print its verdict against the crate.")
    ] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a crate exported from any instance of the platform here, as your calculation or workflow run:
    the same tool versions and image digests, the same parameters, the inputs from the crate (or your
    own files with the same sha256), never from the cache. The new run's id goes to stdout.

    A crate that cannot be run here is refused (exit 6) with every problem listed, and nothing is made.
    With --wait, its verdict against the crate's outputs, and the exit code of `rerun --verify`: 0 if
    identical (or only declared differences), 10 if another output differs, 3, 4 or 5 if it did not
    complete.
    """
    with logged_in_client() as api:
        imported = api.import_crate(crate)
        if not wait:
            if as_json:
                return print_json(imported)
            out.print(imported["id"])
            err.print(
                f"{escape(crate.name)}: imported as {imported['kind']} {imported['id']} ({styled(imported['state'])}),"
                f" repeating {escape(imported['source'])}"
            )
            return None
        try:
            new: Calculation | WorkflowRun = (
                wait_run(api, imported["id"], as_json, timeout)
                if imported["kind"] == "workflow-run"
                else wait_calculation(api, imported["id"], as_json, timeout)
            )
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
    verdict = new.get("verdict")
    if as_json:
        print_json(new)
    else:
        show_verdict(new["id"], verdict)
    raise typer.Exit(verdict_exit_code(new, verdict))
