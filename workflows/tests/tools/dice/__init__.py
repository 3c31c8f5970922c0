"""dice: copies its input after a line of random bytes, and stamps the time it ran. Test-only: a tool
that declares itself nondeterministic (and one output that carries a timestamp), so that a rerun's
verdict says "differs", not "different" (issue 20)."""

from collections.abc import Mapping
from pathlib import Path

from calculations.tools import InputRole, OutputRole, Resources, ToolParams, ToolSpec


class DiceParams(ToolParams):
    pass


def build_argv(params: DiceParams, inputs: Mapping[str, Path]) -> list[str]:
    script = 'od -An -N16 -tx1 /dev/urandom > roll.txt; cat "$1" >> roll.txt; date +%s%N > stamp.txt'
    return ["sh", "-c", script, "dice", str(inputs["text"])]


TOOL = ToolSpec(
    name="dice",
    version="1",
    description="Copy the input after a line of random bytes; stamp the time.",
    params_model=DiceParams,
    inputs=(InputRole("text", "Any text.", ("text",)),),
    outputs=(
        OutputRole("roll", "Random bytes, then the input.", "roll.txt", "text"),
        OutputRole("stamp", "When it ran (ns since the epoch).", "stamp.txt", "text", carries_timestamps=True),
    ),
    build_argv=build_argv,
    executable="sh",
    resources=Resources(cpus=1, memory_mb=256, time_limit_seconds=60),
    nondeterministic=True,
)
