"""roc-validator (crs4's rocrate-validator), offline: run by its own virtualenv's python
(.venv-crate-validator, scripts/crate-validator-venv.sh), never imported by the platform.

The validator resolves a crate's JSON-LD @context over HTTP (requests, and rdflib's loader, which it
routes through requests). Here every HTTP request is answered from the contexts vendored in
third_party/ro-crate-contexts/ (contexts.json: URL -> file), any other URL is refused and named, and
every internet socket is refused as well, so a validation never reaches the network, and says what it
wanted when it would have.

    crate_validator.py json [--severity REQUIRED] CRATE PROFILE [CRATE PROFILE ...]
        one JSON document on stdout: each crate's result (the validator's own to_dict(), and the
        requests refused while it was checked), and the URLs served from third_party/ (the tests'
        helper: calculations/tests/crate_validation.py)
    crate_validator.py cli VALIDATOR-ARGS...
        the validator's own command line (`rocrate-validator validate ...`), offline
        (scripts/validate-crate.sh)
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

CONTEXTS = Path(__file__).resolve().parent.parent / "third_party" / "ro-crate-contexts"
served: list[str] = []
refused: list[str] = []


class OfflineError(requests.ConnectionError):
    """A request for something that is not vendored: the validation is offline."""


def _vendored() -> dict[str, Path]:
    table: dict[str, str] = json.loads((CONTEXTS / "contexts.json").read_text())
    return {url: CONTEXTS / name for url, name in table.items()}


def go_offline() -> None:
    """Answer HTTP from third_party/ro-crate-contexts/ and refuse every internet connection."""
    vendored = _vendored()

    def send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        url = str(request.url)
        path = vendored.get(url.split("#", 1)[0])
        if path is None or request.method not in ("GET", "HEAD"):
            refused.append(f"{request.method} {url}")
            raise OfflineError(f"offline: {url} is not in third_party/ro-crate-contexts/", request=request)
        served.append(url)
        response = requests.Response()
        response.status_code, response.reason, response.url = 200, "OK", url
        response.request, response.encoding = request, "utf-8"
        response._content = b"" if request.method == "HEAD" else path.read_bytes()
        response.headers["Content-Type"] = "application/ld+json"
        return response

    HTTPAdapter.send = send  # type: ignore[method-assign]

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refused.append(f"connect {address}")
            raise OSError(f"offline: no connection to {address}")
        real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]

    # rdflib falls back to urllib when a loader fails: not even a DNS query leaves the process
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        refused.append(f"resolve {host}")
        raise socket.gaierror(socket.EAI_NONAME, f"offline: {host} is not resolved")

    socket.getaddrinfo = getaddrinfo


def validate(crate: str, profile: str, severity: str) -> dict[str, Any]:
    """One crate against one profile: the validator's result, or the error that stopped it."""
    from rocrate_validator import services

    # no_cache: nothing persisted between runs, and no warm-up of the profiles' declared resources
    settings = services.ValidationSettings(
        rocrate_uri=crate, profile_identifier=profile, requirement_severity=severity, no_cache=True
    )
    outcome: dict[str, Any] = {"crate": crate, "profile": profile, "severity": severity}
    already_refused = len(refused)
    try:
        outcome.update(services.validate(settings).to_dict(), error=None)
    except Exception as error:  # reported, not raised: the other crates are still validated
        outcome.update(passed=False, issues=[], error=f"{type(error).__name__}: {error}")
    outcome["refused"] = refused[already_refused:]
    return outcome


def main(argv: list[str]) -> int:
    if argv[:1] == ["cli"]:
        go_offline()
        from rocrate_validator.cli.main import cli

        try:
            cli.main(args=argv[1:], prog_name="rocrate-validator", standalone_mode=True)
        finally:
            if refused:
                print(f"offline: refused {refused}", file=sys.stderr)
        return 0
    if argv[:1] != ["json"]:
        print(__doc__, file=sys.stderr)
        return 2
    args, severity = argv[1:], "REQUIRED"
    if args[:1] == ["--severity"]:
        severity, args = args[1], args[2:]
    if not args or len(args) % 2:
        print("json: give CRATE PROFILE pairs", file=sys.stderr)
        return 2
    go_offline()
    from rocrate_validator import __version__

    results = [validate(crate, profile, severity) for crate, profile in zip(args[::2], args[1::2], strict=True)]
    report = {"validator": __version__, "results": results, "served": sorted(set(served))}
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
