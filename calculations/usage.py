"""What a tool's runs measured, and what it suggests they ask for (issue 21).

Statistics: the last EMGAPI_RESOURCES__RECOMMEND_WINDOW complete calculations of the tool that ran
it (not cache hits or followers: their figures are another run's), each its current attempt's
`max_rss_mb` and `wall_seconds` against its inputs' total size (`Provenance.input_bytes`, kept at
submission: a deleted input file still counts). They fall into decades of input size (up to 1 MB,
1–10 MB, 10–100 MB, …; MB = MiB, as memory), because peak memory follows input size, and a band
holds sizes within a factor of 10. p50 and p95 are nearest-rank: "95 % of runs peaked at or under"
is then exactly true of the runs read. A band with RECOMMEND_MIN_RUNS runs gives a recommendation:
the p95 rounded up to the next whole MB. (GET /tools/{name} shows only such bands: every user's runs
are counted, and the figures of a few would tell one user of another's.)

The figures are read at most every RECOMMEND_CACHE_SECONDS per process and tool (one indexed,
bounded query: migration 0016's partial index), so neither GET /tools/{name} nor a calculation's
completion pays for them. With RECOMMEND_DEFAULTS on, a request that does not ask for memory is
given its band's recommendation × RECOMMEND_MARGIN (`recommended_grant`), on the backends whose
memory limit is on resident memory (RECOMMEND_BACKENDS)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.fields.json import KT

from calculations.models import Calculation
from calculations.provenance import AttemptRecord
from calculations.resources import most_asked
from calculations.states import RunState
from calculations.tools import ToolSpec
from emgapiv2.config import get_settings

MB = 1024 * 1024
# upper edges (MB) of the input-size bands; above the last, one open band
BAND_EDGES_MB = (1, 10, 100, 1_000, 10_000, 100_000)


@dataclass(frozen=True)
class MeasuredRun:
    input_bytes: int
    max_rss_mb: float
    wall_seconds: float | None


@dataclass(frozen=True)
class Recommendation:
    memory_mb: int  # the band's p95, rounded up: its runs peaked under it
    basis: str  # "95 % of 24 runs with inputs of 1–10 MB peaked under 310 MB"
    runs: int


@dataclass(frozen=True)
class UsageBand:
    inputs_over_mb: int  # inputs of more than this…
    inputs_up_to_mb: int | None  # …and at most this (None: no upper bound)
    runs: int
    memory_mb_p50: float
    memory_mb_p95: float
    wall_seconds_p50: float | None
    wall_seconds_p95: float | None
    recommendation: Recommendation | None  # None: fewer runs than RECOMMEND_MIN_RUNS


@dataclass(frozen=True)
class ToolUsage:
    tool: str
    runs: int  # measured runs read (at most `window`)
    window: int
    min_runs: int
    bands: tuple[UsageBand, ...]  # only bands with runs, smallest inputs first

    def band_for(self, input_bytes: int) -> UsageBand | None:
        """The band of inputs of this size, if any run of such a size was measured."""
        index = band_index(input_bytes)
        lower = 0 if index == 0 else BAND_EDGES_MB[index - 1]
        return next((band for band in self.bands if band.inputs_over_mb == lower), None)


def band_index(input_bytes: int) -> int:
    """Which band inputs of this total size fall in (len(BAND_EDGES_MB): the open one)."""
    size_mb = input_bytes / MB
    return next((i for i, edge in enumerate(BAND_EDGES_MB) if size_mb <= edge), len(BAND_EDGES_MB))


def nearest_rank(sorted_values: Sequence[float], fraction: float) -> float:
    """The smallest value that `fraction` of the values are at or under."""
    return sorted_values[max(math.ceil(fraction * len(sorted_values)) - 1, 0)]


def _describe_inputs(over_mb: int, up_to_mb: int | None) -> str:
    if up_to_mb is None:
        return f"inputs over {over_mb:,} MB"
    if over_mb == 0:
        return f"inputs up to {up_to_mb:,} MB"
    return f"inputs of {over_mb:,}–{up_to_mb:,} MB"


def _band(index: int, runs: list[MeasuredRun], min_runs: int) -> UsageBand:
    over_mb = 0 if index == 0 else BAND_EDGES_MB[index - 1]
    up_to_mb = BAND_EDGES_MB[index] if index < len(BAND_EDGES_MB) else None
    memory = sorted(run.max_rss_mb for run in runs)
    walls = sorted(run.wall_seconds for run in runs if run.wall_seconds is not None)
    p95 = nearest_rank(memory, 0.95)
    recommendation = None
    if len(runs) >= min_runs:
        under_mb = math.floor(p95) + 1
        basis = f"95 % of {len(runs)} runs with {_describe_inputs(over_mb, up_to_mb)} peaked under {under_mb:,} MB"
        recommendation = Recommendation(memory_mb=under_mb, basis=basis, runs=len(runs))
    return UsageBand(
        inputs_over_mb=over_mb,
        inputs_up_to_mb=up_to_mb,
        runs=len(runs),
        memory_mb_p50=nearest_rank(memory, 0.5),
        memory_mb_p95=p95,
        wall_seconds_p50=nearest_rank(walls, 0.5) if walls else None,
        wall_seconds_p95=nearest_rank(walls, 0.95) if walls else None,
        recommendation=recommendation,
    )


def summarize(tool: str, runs: Sequence[MeasuredRun], *, window: int, min_runs: int) -> ToolUsage:
    """The statistics of `runs` by band of input size."""
    by_band: dict[int, list[MeasuredRun]] = {}
    for run in runs:
        by_band.setdefault(band_index(run.input_bytes), []).append(run)
    bands = tuple(_band(index, by_band[index], min_runs) for index in sorted(by_band))
    return ToolUsage(tool=tool, runs=len(runs), window=window, min_runs=min_runs, bands=bands)


def _current_record(attempts: Any, attempt: int) -> Mapping[str, Any] | None:
    if not isinstance(attempts, list):
        return None
    return next((r for r in reversed(attempts) if isinstance(r, dict) and r.get("attempt") == attempt), None)


def measured_runs(tool: str, window: int) -> list[MeasuredRun]:
    """The last `window` complete calculations of `tool` that ran it and measured their peak memory."""
    done = Calculation.objects.filter(tool=tool, state=RunState.COMPLETE, cached_from__isnull=True)
    done = done.order_by("-finished_at")[:window]
    return _figures_postgresql(done) if connection.vendor == "postgresql" else _figures(done)


def _figures_postgresql(done: QuerySet[Calculation]) -> list[MeasuredRun]:
    """The three figures only, of each run's last attempt (its current one): decoding every attempt's
    record made a read of 500 runs take 30 to 60 ms, where the query itself takes under 1 ms."""
    current = "provenance__attempts__-1__resource_usage__"
    figures = done.values_list(KT("provenance__input_bytes"), KT(f"{current}max_rss_mb"), KT(f"{current}wall_seconds"))
    return [
        MeasuredRun(int(size), float(peak), float(wall) if wall is not None else None)
        for size, peak, wall in figures
        if size is not None and peak is not None
    ]


def _figures(done: QuerySet[Calculation]) -> list[MeasuredRun]:
    """The figures of each run's current attempt, from its whole record (SQLite cannot index from the end)."""
    runs = []
    for attempt, input_bytes, attempts in done.values_list(
        "attempt", "provenance__input_bytes", "provenance__attempts"
    ):
        usage = (_current_record(attempts, attempt) or {}).get("resource_usage") or {}
        if not isinstance(input_bytes, int) or not isinstance(usage.get("max_rss_mb"), int | float):
            continue  # made before input sizes were kept, or its backend did not measure memory
        wall = usage.get("wall_seconds")
        runs.append(MeasuredRun(input_bytes, float(usage["max_rss_mb"]), float(wall) if wall is not None else None))
    return runs


# (tool, window, min_runs) -> (expires at, monotonic clock; the statistics)
_cache: dict[tuple[str, int, int], tuple[float, ToolUsage]] = {}
_cache_lock = threading.Lock()


def tool_usage(tool: str) -> ToolUsage:
    """The tool's statistics, read at most every RECOMMEND_CACHE_SECONDS in this process."""
    settings = get_settings().resources
    key, now = (tool, settings.recommend_window, settings.recommend_min_runs), time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    window, min_runs = key[1], key[2]
    usage = summarize(tool, measured_runs(tool, window), window=window, min_runs=min_runs)
    with _cache_lock:
        _cache[key] = (now + settings.recommend_cache_seconds, usage)
    return usage


def clear_usage_cache() -> None:
    """Forget every tool's statistics (tests; they are read again on the next ask)."""
    with _cache_lock:
        _cache.clear()


def default_memory_mb(spec: ToolSpec, recommendation: Recommendation) -> int:
    """What a request that does not ask for memory is given from `recommendation`: × the margin,
    never under the floor, never over the most a request for the tool may ask for here."""
    settings = get_settings().resources
    wanted = max(math.ceil(recommendation.memory_mb * settings.recommend_margin), settings.recommend_floor_mb)
    return min(wanted, most_asked(spec.resources)["max_memory_mb"])


def recommended_grant(
    spec: ToolSpec,
    granted: dict[str, int],
    requested: Mapping[str, int | None] | None,
    *,
    backend: str,
    input_bytes: int,
) -> dict[str, int]:
    """`granted` (`grant_resources`), with memory from the measured runs of inputs of this size when
    EMGAPI_RESOURCES__RECOMMEND_DEFAULTS is on, the request does not ask for memory, the backend
    limits resident memory (RECOMMEND_BACKENDS) and the band has enough runs; else `granted` as it is."""
    settings = get_settings().resources
    if not settings.recommend_defaults or backend not in settings.recommend_backends:
        return granted
    if requested and requested.get("memory_mb") is not None:
        return granted
    band = tool_usage(spec.name).band_for(input_bytes)
    if band is None or band.recommendation is None:
        return granted
    return {**granted, "memory_mb": default_memory_mb(spec, band.recommendation)}


@dataclass(frozen=True)
class RequestedUsed:
    """One resource of one attempt: what it was given, what it used ("-": unknown), and the share."""

    resource: str
    granted: str
    used: str
    share: str = ""  # "4 %" of the grant; for CPUs, how many were busy on average


def _figure(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def requested_vs_used(record: AttemptRecord) -> list[RequestedUsed]:
    """An attempt's memory, time and CPUs: granted against measured."""
    given, usage = record.resources, record.resource_usage
    rows = []
    for resource, granted_key, used_key, unit in (
        ("memory", "memory_mb", "max_rss_mb", "MB"),
        ("time", "time_limit_seconds", "wall_seconds", "s"),
    ):
        granted, used = given.get(granted_key), usage.get(used_key)
        share = f"{100 * used / granted:.0f} %" if granted and used is not None else ""
        rows.append(
            RequestedUsed(
                resource,
                f"{granted:,} {unit}" if granted is not None else "-",
                _figure(used, unit) if used is not None else "-",
                share,
            )
        )
    cpu = [usage[key] for key in ("user_cpu_seconds", "system_cpu_seconds") if key in usage]
    wall = usage.get("wall_seconds")
    busy = f"{sum(cpu) / wall:.2f} busy on average" if cpu and wall else ""
    cpus = given.get("cpus")
    rows.append(
        RequestedUsed(
            "cpus", f"{cpus}" if cpus is not None else "-", f"{_figure(sum(cpu), 's')} CPU time" if cpu else "-", busy
        )
    )
    return rows
