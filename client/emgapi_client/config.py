"""Where the CLI finds the platform and the token: `EMGAPI_URL` and `EMGAPI_TOKEN` (for scripts and
CI), else what `emgapi login` stored in `$XDG_CONFIG_HOME/emgapi/config.json` (default
`~/.config/emgapi/`), a file only its owner can read or write (0600, in a 0700 directory)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

URL_VARIABLE = "EMGAPI_URL"
TOKEN_VARIABLE = "EMGAPI_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "emgapi" / "config.json"


@dataclass(frozen=True)
class Credentials:
    url: str | None
    token: str | None


def stored_credentials() -> Credentials:
    """What `emgapi login` stored (nothing, if it never ran)."""
    try:
        stored = json.loads(config_path().read_text())
    except FileNotFoundError:
        return Credentials(None, None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {config_path()}: {exc}; run `emgapi login` again") from exc
    if not isinstance(stored, dict):
        raise ConfigError(f"{config_path()} is not what `emgapi login` writes; run `emgapi login` again")
    url, token = stored.get("url"), stored.get("token")
    return Credentials(url if isinstance(url, str) else None, token if isinstance(token, str) else None)


def current_credentials() -> Credentials:
    """The environment's URL and token, each falling back on the stored one."""
    stored = stored_credentials()
    return Credentials(
        os.environ.get(URL_VARIABLE) or stored.url,
        os.environ.get(TOKEN_VARIABLE) or stored.token,
    )


def store_credentials(url: str, token: str) -> Path:
    """Write the config file, readable by its owner only, replacing it whole (never half-written)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    # created 0600 (whatever the umask), so the token is never readable by others, not even briefly
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"url": url, "token": token}, handle, indent=2)
            handle.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


class ConfigError(Exception):
    """The config file exists but cannot be used."""
