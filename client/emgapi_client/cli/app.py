"""`emgapi`'s application: its exit codes, consoles, command groups and shared options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from emgapi_client.client import __version__

if TYPE_CHECKING:
    pass


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
    NOT_REPRODUCED = 10  # `rerun --verify`: an output differs that the tool does not declare may differ
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

# C0 controls but newline and tab, DEL, and C1 controls (U+009B is a CSI to some terminals)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Text from elsewhere (a tool's log, a server's message or file name) as a terminal may show it:
    its control characters, which could clear the screen, set the clipboard (OSC 52) or retitle the
    window, written out as `\\x1b`; newlines and tabs kept."""
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


class _VisibleConsole(Console):
    """A console that shows the control characters of every string it prints (and of table cells),
    never passing them to the terminal: rich itself drops only a few (BEL, BS, CR, VT, FF)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(visible(text), **kwargs)


out = _VisibleConsole(soft_wrap=True)
err = _VisibleConsole(stderr=True)

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

NotifyOption = Annotated[
    str | None,
    typer.Option(
        "--notify",
        metavar="URL",
        help="POST a signed JSON event to URL when the run ends (or at each --notify-on state); "
        "`emgapi webhook-secret` shows the key that signs it.",
    ),
]
NotifyOnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--notify-on",
        metavar="STATE",
        help="A state to be notified of (repeat it; default: COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED).",
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
