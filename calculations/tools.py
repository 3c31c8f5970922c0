"""Tool declarations and the registry that finds them (design brief §4).

A tool is a package under one of `settings.tool_packages` whose `__init__` defines `TOOL`, a
ToolSpec. The API endpoints, their OpenAPI schemas and the worker's argv all come from it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from calculations.names import IDENTIFIER_RULE, is_identifier
from emgapiv2.config import get_settings


class ToolParams(BaseModel):
    """Base for every tool's parameter model: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class InputRole:
    name: str
    description: str
    formats: tuple[str, ...]


@dataclass(frozen=True)
class OutputRole:
    name: str
    description: str
    path: str  # relative to the calculation's working directory
    format: str
    required: bool = True
    # its bytes hold the time it was made: a rerun's verdict expects it to differ (issue 20)
    carries_timestamps: bool = False


@dataclass(frozen=True)
class Resources:
    """What each run of the tool is given unless its request asks otherwise (`resources`), and the
    most a request may ask for (None: only the deployment's EMGAPI_RESOURCES__MAX_… caps). A tool
    uses no GPU unless it declares `max_gpus`."""

    cpus: int = 1
    memory_mb: int = 1024
    time_limit_seconds: int = 3600
    gpus: int = 0
    max_cpus: int | None = None
    max_memory_mb: int | None = None
    max_time_limit_seconds: int | None = None
    max_gpus: int = 0


@dataclass(frozen=True)
class Escalation:
    """How the tool's attempts killed for exceeding their memory or time are retried with more: each
    unset value is the deployment's (EMGAPI_RETRY__ON_OOM, __MEMORY_FACTOR, …). A request may still
    turn a retry off (`retry`)."""

    on_oom: bool | None = None
    on_time_limit: bool | None = None
    memory_factor: float | None = None
    time_factor: float | None = None


@dataclass(frozen=True)
class ContainerImage:
    """The tool's image: `name` is the tag `task images` builds from `context`/Dockerfile, whose
    base image is the build argument BASE_IMAGE (a public image, or a locally built one)."""

    name: str
    context: Path


ArgvBuilder = Callable[[Any, Mapping[str, Path]], list[str]]
InputCheck = Callable[[Any, Mapping[str, str]], None]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    version: str
    description: str
    params_model: type[ToolParams]
    inputs: tuple[InputRole, ...]
    outputs: tuple[OutputRole, ...]
    build_argv: ArgvBuilder  # (validated params, staged input paths by role) -> argv
    executable: str  # looked up on PATH by the local backend (and by Slurm jobs without a container)
    image: ContainerImage | None = None
    default_backend: str = "local"
    network: bool = False  # containers of tools that need none get no network
    resources: Resources = field(default_factory=Resources)
    escalation: Escalation = field(default_factory=Escalation)  # retried with more memory or time
    # Optional extra submission check: (params, input file names by role); raises ValueError.
    check_inputs: InputCheck | None = None
    # the same inputs may give other bytes (random seeds, threads): a rerun's verdict says "differs",
    # not "different", when its outputs do not match
    nondeterministic: bool = False

    def input_role(self, name: str) -> InputRole | None:
        return next((role for role in self.inputs if role.name == name), None)

    @property
    def backends(self) -> tuple[str, ...]:
        """Backends that can run this tool: an executable runs locally or in a Slurm job; the
        container backend needs an image."""
        return ("local", "container", "slurm") if self.image else ("local", "slurm")

    def available_backends(self) -> list[str]:
        enabled = get_settings().execution.enabled
        return [name for name in self.backends if name in enabled]

    def choose_backend(self, requested: str | None) -> str:
        """The backend a submission runs on: the request's, else the deployment's default, else
        the tool's; ValueError says why a choice is impossible."""
        available = self.available_backends()
        if requested is not None:
            if requested not in self.backends:
                raise ValueError(
                    f"tool {self.name!r} cannot run on backend {requested!r}; it supports {', '.join(self.backends)}"
                )
            if requested not in available:
                enabled = ", ".join(get_settings().execution.enabled)
                raise ValueError(f"backend {requested!r} is not enabled on this deployment (enabled: {enabled})")
            return requested
        if not available:
            raise ValueError(f"no backend enabled on this deployment can run tool {self.name!r}")
        for candidate in (get_settings().execution.default, self.default_backend):
            if candidate in available:
                return candidate
        return available[0]


class UnknownTool(LookupError):
    pass


@lru_cache
def get_registry() -> dict[str, ToolSpec]:
    """All tools of the configured tool packages, by name."""
    registry: dict[str, ToolSpec] = {}
    for package_name in get_settings().tool_packages:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            spec = getattr(importlib.import_module(f"{package_name}.{module.name}"), "TOOL", None)
            if not isinstance(spec, ToolSpec):
                continue
            if spec.name in registry:
                raise RuntimeError(f"tool {spec.name!r} is declared twice")
            for role in [*(role.name for role in spec.inputs), *(role.name for role in spec.outputs)]:
                if not is_identifier(role):  # roles appear in pipeline references and file names
                    raise RuntimeError(f"tool {spec.name!r}: role {role!r} is not {IDENTIFIER_RULE}")
            registry[spec.name] = spec
    return registry


def get_tool(name: str) -> ToolSpec:
    try:
        return get_registry()[name]
    except KeyError:
        known = ", ".join(sorted(get_registry())) or "none"
        raise UnknownTool(f"unknown tool {name!r} (known tools: {known})") from None
