"""chatter: writes numbered lines to stdout over time (a log to follow while it runs). Test-only."""

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from calculations.tools import InputRole, OutputRole, Resources, ToolParams, ToolSpec


class ChatterParams(ToolParams):
    lines: int = Field(100, ge=1, le=100_000)
    interval_seconds: float = Field(0.02, ge=0, le=10)


def build_argv(params: ChatterParams, inputs: Mapping[str, Path]) -> list[str]:
    # multi-byte characters in every line: a chunk cut at a fixed size would split some of them
    script = 'i=0; while [ "$i" -lt "$1" ]; do echo "line $i ✓ ünïcode"; i=$((i+1)); sleep "$2"; done; cp "$3" out.txt'
    return ["sh", "-c", script, "chatter", str(params.lines), str(params.interval_seconds), str(inputs["text"])]


TOOL = ToolSpec(
    name="chatter",
    version="1",
    description="Write numbered lines to stdout over time, then copy the input.",
    params_model=ChatterParams,
    inputs=(InputRole("text", "Any text.", ("text",)),),
    outputs=(OutputRole("copy", "The input, copied.", "out.txt", "text"),),
    build_argv=build_argv,
    executable="sh",
    resources=Resources(cpus=1, memory_mb=256, time_limit_seconds=600),
)
