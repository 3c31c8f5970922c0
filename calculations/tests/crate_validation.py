"""A crate checked by roc-validator (crs4's rocrate-validator) against its Workflow Run Crate profile,
offline: the tests' one way to ask "would a reader of this crate accept it?".

The validator runs in its own virtualenv (.venv-crate-validator: scripts/crate-validator-venv.sh,
which `task test` makes beside the images) through scripts/crate_validator.py, which answers its HTTP
requests from the JSON-LD contexts vendored in third_party/ro-crate-contexts/ and refuses every
other request, every DNS query and every internet connection; where the kernel lets us (root, as in
CI), it runs in a network namespace of its own, with no network at all. Several crates are best
checked in one call (`validate_crates`): the validator takes a few seconds to start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from emgapiv2.config import BASE_DIR

VENV_PYTHON = BASE_DIR / ".venv-crate-validator" / "bin" / "python"
RUNNER = BASE_DIR / "scripts" / "crate_validator.py"
# the profiles of Workflow Run RO-Crate 0.5, by the validator's identifiers
PROCESS_RUN = "process-run-crate-0.5"
WORKFLOW_RUN = "workflow-run-crate-0.5"
PROVENANCE_RUN = "provenance-run-crate-0.5"


@dataclass(frozen=True)
class CrateIssue:
    severity: str  # REQUIRED, RECOMMENDED or OPTIONAL
    check: str  # the validator's name for the check that failed
    message: str
    entity: str | None  # the @id it is about, when the validator says

    def __str__(self) -> str:
        about = f" [{self.entity}]" if self.entity else ""
        return f"{self.severity} {self.check}: {self.message}{about}"


@dataclass(frozen=True)
class CrateReport:
    crate: Path
    profile: str
    severity: str  # the lowest severity checked: REQUIRED checks only MUST, RECOMMENDED adds SHOULD
    passed: bool
    issues: tuple[CrateIssue, ...]
    error: str | None  # what stopped the validator, if anything did
    refused: tuple[str, ...]  # requests it made that were not answered: nothing is fetched, ever

    @property
    def is_valid(self) -> bool:
        return self.passed and self.error is None and not self.issues

    def __str__(self) -> str:
        verdict = "valid" if self.is_valid else "INVALID"
        lines = [f"{self.crate.name} against {self.profile} at {self.severity}: {verdict}"]
        lines += [f"  error: {self.error}"] if self.error else []
        lines += [f"  {issue}" for issue in self.issues]
        lines += [f"  refused (offline): {url}" for url in self.refused]
        return "\n".join(lines)


@cache
def _without_network() -> list[str]:
    """`unshare -n` where it works: the validator then has no network to reach, whatever it tries."""
    if shutil.which("unshare") is None:
        return []
    works = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0
    return ["unshare", "-n"] if works else []


def _issue(raw: dict[str, Any]) -> CrateIssue:
    check = raw.get("check") or {}
    name = check.get("name") or check.get("identifier") or "?"
    requirement = (check.get("requirement") or {}).get("name")
    return CrateIssue(
        severity=str(raw.get("severity")),
        check=f"{requirement} / {name}" if requirement and requirement != name else str(name),
        message=str(raw.get("message") or "").strip(),
        entity=raw.get("violatingEntity"),
    )


def validate_crates(crates: Sequence[tuple[Path, str]], severity: str = "REQUIRED") -> list[CrateReport]:
    """Each (crate, profile): the crate (a zip or a directory) validated against the profile and the
    profiles it inherits, at `severity` and above, in one run of the validator."""
    if not VENV_PYTHON.exists():
        pytest.fail(f"{VENV_PYTHON} is missing: scripts/crate-validator-venv.sh makes it (task test does)")
    argv = [*_without_network(), str(VENV_PYTHON), str(RUNNER), "json", "--severity", severity]
    for crate, profile in crates:
        argv += [str(crate), profile]
    with tempfile.TemporaryDirectory() as home:
        # a home of its own: the validator keeps no cache or config between runs; proxies to nowhere
        # as a second guard behind the runner's refusal of every connection
        nowhere = "http://127.0.0.1:9"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "XDG_CACHE_HOME": home}
        env |= {name: nowhere for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"the validator failed to run ({done.returncode}):\n{done.stderr[-5000:]}"
    report = json.loads(done.stdout)
    return [
        CrateReport(
            crate=crate,
            profile=profile,
            severity=severity,
            passed=bool(result.get("passed")),
            issues=tuple(_issue(issue) for issue in result.get("issues", [])),
            error=result.get("error"),
            refused=tuple(result["refused"]),
        )
        for (crate, profile), result in zip(crates, report["results"], strict=True)
    ]


def validate_crate(crate: Path, profile: str, severity: str = "REQUIRED") -> CrateReport:
    """The crate (a zip or a directory) validated against `profile` at `severity` and above."""
    return validate_crates([(crate, profile)], severity)[0]
