"""What a calculation's attempts are given (issue 21): its request's `resources` within its tool's
maxima and the deployment's caps (EMGAPI_RESOURCES__MAX_…), each value it does not ask for the tool's
own. The grant is kept in provenance (`Provenance.resources`, and each attempt's record) and read by
the backends; it is not part of the cache key: resources do not change a deterministic result.

An attempt killed for exceeding its memory or its time is retried with more (`escalation_plan`,
`next_grant`): the value multiplied by a factor, up to a cap (the tool's or the deployment's maximum,
or the request's own `retry.max_…`), while attempts are left. The plan is fixed when the calculation is
made and kept in provenance (`Provenance.escalation`), so that what each attempt may get is on record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from calculations.errors import InvalidInput
from calculations.tools import Escalation, Resources
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


# each limit a retry gives more of: (the request's and the tool's switch, the factor's setting, unit, what)
ESCALATED = {
    "memory_mb": ("on_oom", "memory_factor", "MB", "out of memory"),
    "time_limit_seconds": ("on_time_limit", "time_factor", "s", "time limit exceeded"),
}


class RetryIn(BaseModel):
    """Whether an attempt killed for exceeding its memory (or time) is retried with more, and the most
    a retry may be given. Unset: the tool's choice, else the deployment's (EMGAPI_RETRY__ON_OOM, …)."""

    model_config = ConfigDict(extra="forbid")

    on_oom: bool | None = Field(None, description="Retry an attempt killed for its memory with more memory.")
    on_time_limit: bool | None = Field(None, description="Retry an attempt killed for its time limit with more time.")
    max_memory_mb: int | None = Field(
        None, ge=1, description="The most memory a retry may be given (unset: the tool's or deployment's maximum)."
    )
    max_time_limit_seconds: int | None = Field(
        None, ge=1, description="The longest time limit a retry may be given (unset: the tool's or deployment's)."
    )


def escalation_plan(
    resources: Resources, escalation: Escalation, granted: Mapping[str, int], asked: Mapping[str, Any] | None
) -> dict[str, dict[str, float]]:
    """For each limit retried with more: its factor and its cap. InvalidInput (a 422) for a `retry.max_…`
    above what the tool and the deployment allow, or below what the first attempt is given."""
    settings, asked = get_settings().retry, asked or {}
    most = most_asked(resources)
    plan: dict[str, dict[str, float]] = {}
    for name, (switch, factor_setting, unit, _) in ESCALATED.items():
        chosen = [asked.get(switch), getattr(escalation, switch), getattr(settings, switch)]
        if not next(on for on in chosen if on is not None):
            continue
        cap, wanted = most[f"max_{name}"], asked.get(f"max_{name}")
        if wanted is not None:
            if wanted > cap:
                raise InvalidInput(
                    f"retry.max_{name}: {wanted} is above the most a run may be given here ({cap} {unit})"
                )
            if wanted < granted[name]:
                raise InvalidInput(
                    f"retry.max_{name}: {wanted} is below what the run is given ({granted[name]} {unit})"
                )
            cap = wanted
        factor = getattr(escalation, factor_setting) or getattr(settings, factor_setting)
        plan[name] = {"factor": factor, "cap": cap}
    return plan


def next_grant(provenance: Mapping[str, Any], attempt: int, name: str) -> tuple[int | None, dict[str, int] | None]:
    """What attempt `attempt` was given of resource `name`, and the grant of the next attempt with more
    of it: None when the run does not retry this limit with more, or it already had its cap."""
    plan = (provenance.get("escalation") or {}).get(name)
    given = _given(provenance, attempt)
    value = given.get(name)
    if plan is None or value is None or value >= plan["cap"]:
        return value, None
    more = min(max(int(value * plan["factor"]), value + 1), int(plan["cap"]))
    return value, {**given, name: more}


def _given(provenance: Mapping[str, Any], attempt: int) -> dict[str, int]:
    granted: dict[str, int] = dict(provenance.get("resources") or {})
    for record in provenance.get("attempts", ()):
        if record.get("attempt") == attempt and record.get("resources"):
            granted = dict(record["resources"])
    return granted


def limit_summary(
    provenance: Mapping[str, Any], name: str, value: int | None, *, attempt: int, max_attempts: int
) -> str:
    """Why an attempt killed for a limit ended the run: "out of memory at 8,192 MB (the cap); attempt 3 of 3"."""
    _, _, unit, what = ESCALATED[name]
    plan = (provenance.get("escalation") or {}).get(name)
    at = f" at {value:,} {unit}" if value is not None else ""
    if plan is None:
        return f"{what}{at} (this run is not retried with more)"
    cap = " (the cap)" if value is not None and value >= plan["cap"] else ""
    return f"{what}{at}{cap}; attempt {attempt} of {max_attempts}"


def retry_reason(name: str, value: int, more: int, *, attempt: int) -> str:
    """The event of a retry with more: "out of memory at 1,024 MB on attempt 1; retrying as attempt 2 with 2,048 MB"."""
    _, _, unit, what = ESCALATED[name]
    return f"{what} at {value:,} {unit} on attempt {attempt}; retrying as attempt {attempt + 1} with {more:,} {unit}"
