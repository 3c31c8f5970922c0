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


@dataclass(frozen=True)
class Resources:
    cpus: int = 1
    memory_mb: int = 1024
    time_limit_seconds: int = 3600


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
    executable: str  # looked up on PATH by the local backend
    resources: Resources = field(default_factory=Resources)
    # Optional extra submission check: (params, input file names by role); raises ValueError.
    check_inputs: InputCheck | None = None

    def input_role(self, name: str) -> InputRole | None:
        return next((role for role in self.inputs if role.name == name), None)


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
            registry[spec.name] = spec
    return registry


def get_tool(name: str) -> ToolSpec:
    try:
        return get_registry()[name]
    except KeyError:
        known = ", ".join(sorted(get_registry())) or "none"
        raise UnknownTool(f"unknown tool {name!r} (known tools: {known})") from None
