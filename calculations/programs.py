"""What a calculation runs: a registered tool (`calculations/tools.py`), or a GA4GH TES task's
executors. A calculation's `tool` names its program; everything that differs between the two is said
here once, so no other module compares a calculation's tool with the TES pseudo-tool:

- `runner`: which runner executes an attempt (`workflows` has one per runner: a tool's argv, or a
  TES task's executors in turn);
- `cacheable`: a TES task is never a cache hit (an image tag may name other bytes since, and TES
  clients expect their task to run);
- `keeps_failed_workdir`: a failed tool's work directory is kept for inspection; a TES task's
  scratch space is as large as its user made it, and goes when its attempt ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from calculations.tes import TES_TOOL, TES_VERSION
from calculations.tools import UnknownTool, get_registry

TOOL_RUNNER = "tool"
TES_RUNNER = "tes-task"


@dataclass(frozen=True)
class Program:
    name: str
    version: str
    runner: str
    cacheable: bool = True
    keeps_failed_workdir: bool = True


BUILT_IN = {TES_TOOL: Program(TES_TOOL, TES_VERSION, TES_RUNNER, cacheable=False, keeps_failed_workdir=False)}


def get_program(name: str) -> Program:
    """The program a calculation of `name` runs (UnknownTool if there is none)."""
    if (spec := get_registry().get(name)) is not None:
        return Program(spec.name, spec.version, TOOL_RUNNER)
    if (program := BUILT_IN.get(name)) is not None:
        return program
    raise UnknownTool(f"unknown tool {name!r}")


def program_names() -> list[str]:
    """Every name a calculation's `tool` may hold: the registered tools and the built-in programs."""
    return sorted({*get_registry(), *BUILT_IN})
