"""With EMGAPI_RESOURCES__RECOMMEND_DEFAULTS on, the next Slurm job of a tool whose runs were measured
asks for what they peaked at (× the margin), not the tool's own 1 GB (issue 21's acceptance)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from calculations.actions import check_create_calculation
from calculations.resources import attempt_resources
from calculations.tests.test_usage import BIG_GENOME, run_prodigal
from calculations.tools import get_tool
from calculations.usage import clear_usage_cache
from emgapiv2.config import get_settings
from workflows.backends.slurm import SlurmBackend
from workflows.tests.backends.jobs import job_spec

pytestmark = pytest.mark.django_db


def test_the_next_slurm_job_asks_for_the_recommended_memory(
    alice_id: int, uploaded: Callable[[str, bytes], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clear_usage_cache()
    monkeypatch.setattr(get_settings().execution, "enabled", ["local", "slurm"])
    genome = uploaded("genome.fna", BIG_GENOME)
    for peak in range(60, 80):  # 20 runs on a 2 MB genome, peaking at 60 to 79 MB: p95 78, "under 79 MB"
        run_prodigal(alice_id, genome, float(peak))
    monkeypatch.setattr(get_settings().resources, "recommend_defaults", True)
    calc = check_create_calculation(
        alice_id, "prodigal", inputs={"contigs": UUID(genome)}, params={}, use_cache=False, backend="slurm"
    )
    # what the tool runner gives the backend for attempt 1 (workflows/execution/tool_runner.py)
    given = attempt_resources(get_tool("prodigal").resources, calc.provenance, 1)
    spec = job_spec(
        tmp_path, ["prodigal", "-i", "contigs.fna"],
        **{name: given[name] for name in ("cpus", "memory_mb", "time_limit_seconds", "gpus")},
    )  # fmt: skip
    sbatch = SlurmBackend()._sbatch_args(spec)
    print("sbatch", shlex.join(sbatch))  # the request, for the record (pytest -s)
    assert f"--mem={math.ceil(79 * 1.25)}M" in sbatch  # 99 MB, where the tool's own is 1,024
    clear_usage_cache()
