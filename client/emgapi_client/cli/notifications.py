"""Notifications: the record of each event your runs asked to be POSTed, and the secret that signs them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from emgapi_client.cli.app import JsonOption, app, out
from emgapi_client.cli.common import check_id, id_table, logged_in_client, print_json, styled, when

STATUS_STYLES = {"delivered": "green", "failed": "red", "pending": "yellow"}


@app.command("notifications")
def list_notifications(
    run: Annotated[
        str | None, typer.Option("--run", metavar="ID", help="Only those of this calculation or workflow run.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only pending, delivered or failed ones.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=5000, help="Show at most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Your notifications, newest first: where each went, how its delivery went, and why one was given up."""
    with logged_in_client() as api:
        notifications = api.list_notifications(
            run=check_id(run) if run else None, status=status.lower() if status else None, limit=limit
        )
    if as_json:
        return print_json(notifications)
    table = id_table("id", "run", "state", "status", "attempts", "at", "url", "error")
    for item in notifications:
        colour = STATUS_STYLES.get(item["status"], "")
        table.add_row(
            item["id"],
            item["run"],
            styled(item["state"]),
            f"[{colour}]{item['status']}[/]" if colour else item["status"],
            str(item["attempts"]),
            when(item["created_at"]),
            escape(item["url"]),
            escape(item["error"]),
        )
    out.print(table)
    return None


@app.command("webhook-secret")
def webhook_secret(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace it: deliveries from now on, retries too, are signed anew.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the secret your notifications are signed with (X-Emgapi-Signature: sha256=<HMAC-SHA256 of the body>)."""
    with logged_in_client() as api:
        secret = api.rotate_webhook_secret() if rotate else api.get_webhook_secret()
    if as_json:
        return print_json(secret)
    out.print(secret["secret"])
    return None
