"""What a calculation's attempts are given (issue 21): its request's `resources` within its tool's
maxima and the deployment's caps (EMGAPI_RESOURCES__MAX_…), each value it does not ask for the tool's
own. The grant is kept in provenance (`Provenance.resources`, and each attempt's record) and read by
the backends; it is not part of the cache key: resources do not change a deterministic result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from calculations.errors import InvalidInput
from calculations.tools import Resources
from emgapiv2.config import get_settings

RESOURCE_NAMES = ("cpus", "memory_mb", "time_limit_seconds", "gpus")


class ResourcesIn(BaseModel):
    """What the run asks for; each value unset is the tool's own (GET /tools/{name} shows them and the
    tool's maxima). Above the tool's or the deployment's maximum is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    cpus: int | None = Field(None, ge=1, description="CPUs.")
    memory_mb: int | None = Field(None, ge=1, description="Memory in MB; over it the tool is killed.")
    time_limit_seconds: int | None = Field(None, ge=1, description="Wall time in seconds; over it the tool is killed.")
    gpus: int | None = Field(
        None, ge=0, description="GPUs (container and slurm backends, where the deployment has them)."
    )


def default_grant(resources: Resources) -> dict[str, int]:
    """The tool's own values: what a request without `resources` is given."""
    return {name: getattr(resources, name) for name in RESOURCE_NAMES}


def grant_resources(
    tool: str, resources: Resources, requested: Mapping[str, int | None] | None, *, backend: str
) -> dict[str, int]:
    """The grant for a request on `backend`; InvalidInput (a 422) names the limit a value is above
    and where that limit comes from, or why the backend cannot give GPUs."""
    caps = get_settings().resources
    granted = default_grant(resources)
    for name, value in (requested or {}).items():
        if value is None:
            continue
        if name not in RESOURCE_NAMES:
            raise InvalidInput(f"resources.{name}: unknown resource (known: {', '.join(RESOURCE_NAMES)})")
        tool_max: int | None = getattr(resources, f"max_{name}")
        if tool_max is not None and value > tool_max:
            why = " (it uses no GPU)" if name == "gpus" and tool_max == 0 else ""
            raise InvalidInput(
                f"resources.{name}: {value} is above the maximum of {tool_max} that tool {tool!r} allows{why}"
            )
        cap: int = getattr(caps, f"max_{name}")
        if value > cap:
            raise InvalidInput(
                f"resources.{name}: {value} is above this deployment's maximum of {cap} "
                f"(EMGAPI_RESOURCES__MAX_{name.upper()})"
            )
        granted[name] = value
    if granted["gpus"]:
        check_gpus(backend)
    return granted


def check_gpus(backend: str) -> None:
    """A GPU request on a backend that has none is refused, saying so."""
    settings = get_settings()
    if backend == "local":
        raise InvalidInput("resources.gpus: the local backend cannot give GPUs; ask for backend container or slurm")
    available = {"container": settings.container.gpus_available, "slurm": settings.slurm.gpus_available}
    if not available.get(backend, False):
        raise InvalidInput(
            f"resources.gpus: backend {backend!r} has no GPUs on this deployment "
            f"(EMGAPI_{backend.upper()}__GPUS_AVAILABLE is false)"
        )


def attempt_resources(resources: Resources, provenance: Mapping[str, Any], attempt: int) -> dict[str, int]:
    """What attempt `attempt` is given: its own record's grant, else the calculation's, else (a
    calculation made before grants were kept) the tool's own values. The one answer every backend uses."""
    granted: Mapping[str, int] = provenance.get("resources") or {}
    for record in provenance.get("attempts", ()):
        if record.get("attempt") == attempt and record.get("resources"):
            granted = record["resources"]
    return {**default_grant(resources), **granted}


def most_asked(resources: Resources) -> dict[str, int]:
    """The most a request for the tool may ask for here: the lower of its maximum and the deployment's."""
    caps = get_settings().resources
    most: dict[str, int] = {}
    for name in RESOURCE_NAMES:
        tool_max: int | None = getattr(resources, f"max_{name}")
        cap: int = getattr(caps, f"max_{name}")
        most[f"max_{name}"] = cap if tool_max is None else min(tool_max, cap)
    return most
