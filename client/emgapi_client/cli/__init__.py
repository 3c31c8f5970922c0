"""`emgapi`: the calculations API from a shell. Results go to stdout (a table, or JSON with `--json`);
progress, live state and errors go to stderr. The exit code says how things ended (see `ExitCode`)."""

from __future__ import annotations

import io
import sys
from typing import Literal

from rich.markup import escape

from emgapi_client.cli import calculations, crates, notifications, reruns, workflows  # noqa: F401 (they register the commands)
from emgapi_client.cli.app import ExitCode, app, err
from emgapi_client.cli.common import parse_params
from emgapi_client.cli.workflows import upload_marked_files, upload_pipeline_files
from emgapi_client.config import ConfigError
from emgapi_client.errors import ApiError, ApiUnreachable, ChecksumMismatch, EmgapiError, InvalidUrl, WaitTimeout

__all__ = ["ExitCode", "app", "exit_code_of", "main", "parse_params", "upload_marked_files", "upload_pipeline_files"]

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
        if isinstance(exc, ApiError) and exc.problems:  # every problem, one a line
            summary = exc.detail.split(": ", 1)[0]
            err.print(f"[red]{label}{status}[/]: {escape(summary)}:")
            for problem in exc.problems:
                err.print(f"  - {escape(problem)}")
        else:
            err.print(f"[red]{label}{status}[/]: {escape(str(exc))}")
        sys.exit(exit_code_of(exc))
    except OSError as exc:  # a local file or directory that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"[red]error[/]: {escape(exc.strerror or str(exc))}{escape(str(where))}")
        sys.exit(ExitCode.USAGE)
