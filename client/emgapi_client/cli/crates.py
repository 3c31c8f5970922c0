"""`emgapi export`: a calculation's or a workflow run's record as an RO-Crate zip, checked on arrival."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from emgapi_client.cli.app import JsonOption, app, out
from emgapi_client.cli.common import calculation_or_run, check_id, is_run, logged_in_client, print_json
from emgapi_client.crates import CrateData, CrateKind


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
