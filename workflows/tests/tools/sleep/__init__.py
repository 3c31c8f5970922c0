"""sleep: waits, then copies its input; long enough to be canceled mid-run. Test-only."""

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from calculations.tools import ContainerImage, InputRole, OutputRole, Resources, ToolParams, ToolSpec


class SleepParams(ToolParams):
    seconds: float = Field(30, ge=0, le=600)


def build_argv(params: SleepParams, inputs: Mapping[str, Path]) -> list[str]:
    # a child process in the tool's group: cancel must take it too
    script = 'sleep "$1" & wait; cp "$2" copy.txt'
    return ["sh", "-c", script, "sleep-tool", str(params.seconds), str(inputs["text"])]


TOOL = ToolSpec(
    name="sleep",
    version="1",
    description="Sleep, then copy the input.",
    params_model=SleepParams,
    inputs=(InputRole("text", "Any text.", ("text",)),),
    outputs=(OutputRole("copy", "The input, copied.", "copy.txt", "text"),),
    build_argv=build_argv,
    executable="sh",
    image=ContainerImage("emgapi/test-sleep:1", Path(__file__).parent),
    resources=Resources(cpus=1, memory_mb=256, time_limit_seconds=600),
)
