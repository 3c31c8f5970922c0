"""The grammars of the names users give the platform, checked on the server, in one place.

- identifiers: pipeline step names and tool roles (they appear in references such as `genes.proteins`);
- file names: what a stored file is called (TES `outputs[].name` and a plain `outputs[].url`), which a
  client may write to disk, so never a path: no `/` or `\\`, no control characters, no leading `.` or `-`;
- environment variable names (TES `executors[].env`), which a Slurm job script or a container runtime's
  argv carries: POSIX-ish, so they are never shell syntax, with the variables' count and size bounded;
- container image references, parsed by the grammar of docker's `reference` package (the OCI
  distribution spec's) before any allowlist matches them or any engine sees them: an image name is
  put into engine API paths, where `alpine:x/../../containers` would name another endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from calculations.errors import InvalidInput

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}", re.ASCII)
IDENTIFIER_RULE = "a letter, then up to 63 letters, digits, '-' or '_'"

FILE_NAME_MAX_BYTES = 255
_UNSAFE_IN_FILE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
FILE_NAME_RULE = (
    "a plain file name: 1 to 255 bytes, no '/' or '\\', no control characters, not starting with '.' or '-', "
    "no space at either end"
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
ENV_NAME_RULE = "a letter or '_', then up to 127 letters, digits or '_'"
MAX_ENV_VARIABLES = 128
MAX_ENV_BYTES = 64 * 1024  # names and values together: each becomes an argv word of the container runtime

# docker/distribution `reference` (github.com/distribution/reference, regexp.go)
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
IMAGE_NAME_MAX_CHARACTERS = 255
IMAGE_REFERENCE_RULE = (
    "[registry[:port]/]name[/name…][:tag][@algorithm:hex], with lowercase names of letters and digits "
    "separated by '.', '_', '__' or '-'"
)


def is_identifier(name: str) -> bool:
    return IDENTIFIER.fullmatch(name) is not None


def check_identifier(name: str, where: str) -> str:
    if not is_identifier(name):
        raise InvalidInput(f"{where}: {name[:80]!r} is not a name here ({IDENTIFIER_RULE})")
    return name


def is_file_name(name: str) -> bool:
    return (
        0 < len(name.encode("utf-8", errors="surrogatepass")) <= FILE_NAME_MAX_BYTES
        and _UNSAFE_IN_FILE_NAME.search(name) is None
        and not name.startswith((".", "-"))
        and name == name.strip()
    )


def check_file_name(name: str, where: str) -> str:
    if not is_file_name(name):
        raise InvalidInput(f"{where}: {name[:80]!r} is not {FILE_NAME_RULE}")
    return name


def is_env_name(name: str) -> bool:
    return ENV_NAME.fullmatch(name) is not None


def check_environment(env: Mapping[str, str], where: str) -> None:
    """Every name by the grammar (a 400 names the first bad one), no NUL in a value, and bounded."""
    if len(env) > MAX_ENV_VARIABLES:
        raise InvalidInput(f"{where}: {len(env)} variables; the limit is {MAX_ENV_VARIABLES}")
    for name, value in env.items():
        if not is_env_name(name):
            raise InvalidInput(f"{where}: {name[:80]!r} is not a variable name ({ENV_NAME_RULE})")
        if "\x00" in value:
            raise InvalidInput(f"{where}.{name}: a value cannot hold NUL")
    size = sum(len(name.encode()) + len(value.encode("utf-8", errors="surrogatepass")) for name, value in env.items())
    if size > MAX_ENV_BYTES:
        raise InvalidInput(f"{where}: {size} bytes of names and values; the limit is {MAX_ENV_BYTES}")


def is_image_reference(image: str) -> bool:
    """Whether `image` is a container image reference by docker's grammar (its name ≤ 255 characters)."""
    match = IMAGE_REFERENCE.fullmatch(image)
    return match is not None and len(match["name"]) <= IMAGE_NAME_MAX_CHARACTERS


def check_image_reference(image: str, where: str) -> str:
    if not is_image_reference(image):
        raise InvalidInput(f"{where}: {image[:120]!r} is not a container image reference ({IMAGE_REFERENCE_RULE})")
    return image
