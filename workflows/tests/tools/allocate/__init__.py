"""allocate: takes `mb` MB of memory at once (dd's buffer), then ends. Test-only: a tool that needs
more memory than it may be given (issue 21)."""

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from calculations.tools import ContainerImage, InputRole, Resources, ToolParams, ToolSpec


class AllocateParams(ToolParams):
    mb: int = Field(64, ge=1, le=4096)


def build_argv(params: AllocateParams, inputs: Mapping[str, Path]) -> list[str]:
    # one block of `mb` MB: dd allocates it whole, and says "memory exhausted" if it cannot
    return ["dd", "if=/dev/zero", "of=/dev/null", f"bs={params.mb}M", "count=1"]


TOOL = ToolSpec(
    name="allocate",
    version="1",
    description="Take `mb` MB of memory at once, then end.",
    params_model=AllocateParams,
    inputs=(InputRole("text", "Any text (unused: every submission names a file of its own).", ("text",)),),
    outputs=(),
    build_argv=build_argv,
    executable="dd",
    image=ContainerImage("emgapi/test-sleep:1", Path(__file__).parent.parent / "sleep"),  # (Debian's dd)
    resources=Resources(cpus=1, memory_mb=512, time_limit_seconds=60, max_memory_mb=2048),
)
