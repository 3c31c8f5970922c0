"""What the client raises. Every error's message is meant for a person: the API's own `detail`
when the API refused, otherwise a sentence saying what went wrong where."""

from __future__ import annotations


class EmgapiError(Exception):
    """Anything the client raises on purpose."""


class ApiError(EmgapiError):
    """The API answered an error status (4xx/5xx); the message is the server's `detail`, and
    `problems` each problem it found when it lists them all (a crate's import)."""

    def __init__(
        self, status_code: int, detail: str, *, method: str = "", url: str = "", problems: list[str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url
        self.problems = problems or []


class InvalidUrl(EmgapiError, ValueError):
    """The platform's URL is not an http(s) one."""


class ApiUnreachable(EmgapiError):
    """No answer from the API: connection refused, DNS, TLS or a timeout."""


class ChecksumMismatch(EmgapiError):
    """The bytes the server holds are not the bytes on this side (an upload or a download)."""


class UnsafeFileName(EmgapiError):
    """A server-given file name that cannot be written inside the directory asked for."""


class WaitTimeout(EmgapiError):
    """A wait gave up before the calculation or workflow run reached a final state."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state
