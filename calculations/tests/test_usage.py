"""Measured usage (issue 21): each tool's peak memory and wall time by input size in GET /tools/{name},
a recommendation once a band has enough runs, and (opt-in) a request that asks for no memory given it."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from calculations.actions import (
    JobOutcome,
    OutputBlob,
    check_create_calculation,
    do_end_attempt,
    do_mark_running,
    do_start_calculation,
)
from calculations.models import Calculation
from calculations.policies import AttemptEnd
from calculations.provenance import AttemptRecord
from calculations.storage import get_storage
from calculations.tools import get_tool
from calculations.usage import (
    MeasuredRun,
    _figures,
    _figures_postgresql,
    clear_usage_cache,
    measured_runs,
    requested_vs_used,
    summarize,
    tool_usage,
)
from conftest import ApiClient
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db
MB = 1024 * 1024
# a 2 MB genome (80-column lines): a real prodigal input's size, in the band of 1–10 MB
LINE = b"ACGTTGCAAGGCTTAACCGGATATCGCGATTAGCCTAGGCATCGATCGATGCTAGCTAGCATGCATGCAGTCAGTCAGT\n"
BIG_GENOME = b">contig_1\n" + LINE * (2 * MB // len(LINE))


@pytest.fixture(autouse=True)
def fresh_usage() -> Iterator[None]:
    """Statistics are cached per process: each test reads its own rows."""
    clear_usage_cache()
    yield
    clear_usage_cache()


@pytest.fixture
def on_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().execution, "enabled", ["local", "slurm"])


@pytest.fixture
def defaults_from_usage(monkeypatch: pytest.MonkeyPatch, on_slurm: None) -> None:
    monkeypatch.setattr(get_settings().resources, "recommend_defaults", True)


def run_prodigal(owner_id: int, file_id: str, max_rss_mb: float, *, wall_seconds: float = 2.0) -> Calculation:
    """A prodigal calculation submitted and run to COMPLETE through the actions, as a Slurm worker
    would leave it: its attempt measured `max_rss_mb` at its peak."""
    calc = check_create_calculation(
        owner_id, "prodigal", inputs={"contigs": UUID(file_id)}, params={}, use_cache=False, backend="slurm"
    )
    do_start_calculation(calc.id, 1, flow_run_id=None, backend="slurm", host="node1", workdir=f"/w/{calc.id}")
    do_mark_running(calc.id, 1, job_id="77", argv=["prodigal"], executable="/usr/bin/prodigal")
    outputs = []
    for role in get_tool("prodigal").outputs:
        info = get_storage().put(io.BytesIO(f">{role.name} {calc.id}\nMKV\n".encode()))
        outputs.append(OutputBlob(role=role.name, name=role.path, sha256=info.sha256, size=info.size))
    usage = {"wall_seconds": wall_seconds, "user_cpu_seconds": 1.5, "system_cpu_seconds": 0.1, "max_rss_mb": max_rss_mb}
    return do_end_attempt(calc.id, 1, AttemptEnd.SUCCEEDED, outputs=outputs, outcome=JobOutcome(0, usage, None, None))


@pytest.fixture
def big_genome(uploaded: Callable[[str, bytes], str]) -> str:
    return uploaded("genome.fna", BIG_GENOME)


@pytest.fixture
def twenty_runs(alice_id: int, big_genome: str, on_slurm: None) -> list[float]:
    """prodigal run 20 times on a 2 MB genome, peaking at 30 to 48 MB (and once at 300, an outlier the p95 leaves)."""
    peaks = [30.0 + i for i in range(19)] + [300.0]
    for peak in peaks:
        run_prodigal(alice_id, big_genome, peak)
    return peaks


def usage_of(client: ApiClient, tool: str = "prodigal") -> dict[str, Any]:
    response = client.get(f"/tools/{tool}")
    assert response.status_code == 200, response.content
    return dict(response.json()["usage"])


def test_twenty_runs_make_a_recommendation_in_the_tool(alice: ApiClient, twenty_runs: list[float]) -> None:
    usage = usage_of(alice)
    assert usage["min_runs"] == 20 and usage["defaults_on"] == []
    [band] = usage["bands"]
    assert (band["inputs_over_mb"], band["inputs_up_to_mb"], band["runs"]) == (1, 10, 20)
    # nearest rank: the 10th and 19th of 20 peaks
    assert (band["memory_mb_p50"], band["memory_mb_p95"]) == (39.0, 48.0)
    assert (band["wall_seconds_p50"], band["wall_seconds_p95"]) == (2.0, 2.0)
    assert band["recommendation"] == {
        "memory_mb": 49,
        "basis": "95 % of 20 runs with inputs of 1–10 MB peaked under 49 MB",
        "runs": 20,
        "default_memory_mb": 64,  # 49 × 1.25 = 62, under the floor of 64
    }


def test_fewer_runs_than_the_minimum_are_not_shown(
    alice_id: int, bob: ApiClient, big_genome: str, on_slurm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for peak in (40.0, 41.0):
        run_prodigal(alice_id, big_genome, peak)
    # two of alice's runs: their figures would be hers, shown to bob
    assert usage_of(bob)["bands"] == []
    assert [band.runs for band in tool_usage("prodigal").bands] == [2]  # (measured all the same)
    monkeypatch.setattr(get_settings().resources, "recommend_min_runs", 2)
    [band] = usage_of(bob)["bands"]
    assert band["runs"] == 2 and band["memory_mb_p95"] == 41.0 and band["recommendation"]["memory_mb"] == 42


@pytest.mark.parametrize("read", [_figures_postgresql, _figures])  # its figures only, or each attempt's record
def test_cache_hits_and_runs_without_a_memory_figure_are_not_counted(
    alice_id: int, big_genome: str, on_slurm: None, read: Callable[[Any], list[MeasuredRun]]
) -> None:
    if read is _figures_postgresql and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's read (a JSON array indexed from its end)")
    run_prodigal(alice_id, big_genome, 40.0)
    check_create_calculation(alice_id, "prodigal", inputs={"contigs": UUID(big_genome)}, params={}, use_cache=True)
    unmeasured = run_prodigal(alice_id, big_genome, 0.0)
    provenance = dict(unmeasured.provenance)
    del provenance["attempts"][0]["resource_usage"]["max_rss_mb"]
    Calculation.objects.filter(id=unmeasured.id).update(provenance=provenance)
    assert Calculation.objects.filter(state="COMPLETE").count() == 3
    assert measured_runs("prodigal", 500) == [MeasuredRun(len(BIG_GENOME), 40.0, 2.0)]
    assert read(Calculation.objects.filter(cached_from__isnull=True)) == [MeasuredRun(len(BIG_GENOME), 40.0, 2.0)]


def test_each_band_holds_inputs_within_a_factor_of_ten() -> None:
    runs = [MeasuredRun(512 * 1024, 10.0, None)] * 3 + [MeasuredRun(50 * MB, 200.0 + i, 5.0) for i in range(3)]
    small, middle = summarize("prodigal", runs, window=500, min_runs=3).bands
    assert (small.inputs_over_mb, small.inputs_up_to_mb, small.wall_seconds_p95) == (0, 1, None)
    assert small.recommendation is not None
    assert small.recommendation.basis == "95 % of 3 runs with inputs up to 1 MB peaked under 11 MB"
    assert (middle.inputs_over_mb, middle.inputs_up_to_mb, middle.memory_mb_p50) == (10, 100, 201.0)
    huge = summarize("prodigal", [MeasuredRun(200_000 * MB, 9000.5, 1.0)], window=500, min_runs=1).bands[0]
    assert huge.inputs_up_to_mb is None and huge.recommendation is not None
    assert huge.recommendation.basis == "95 % of 1 runs with inputs over 100,000 MB peaked under 9,001 MB"


# --- the opt-in default ------------------------------------------------------------------------


def granted_memory(alice_id: int, file_id: str, **request: Any) -> int:
    calc = check_create_calculation(
        alice_id, "prodigal", inputs={"contigs": UUID(file_id)}, params={}, use_cache=False, **request
    )
    return int(calc.provenance["resources"]["memory_mb"])


def test_with_the_setting_a_request_that_asks_for_no_memory_is_given_the_recommendation(
    alice: ApiClient, alice_id: int, big_genome: str, twenty_runs: list[float], defaults_from_usage: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(get_settings().resources, "recommend_floor_mb", 16)
    assert usage_of(alice)["defaults_on"] == ["slurm"]
    assert granted_memory(alice_id, big_genome, backend="slurm") == math.ceil(49 * 1.25)
    # what it asks for, it is given
    assert granted_memory(alice_id, big_genome, backend="slurm", resources={"memory_mb": 2048}) == 2048
    # the local backend limits address space, not the resident peak: the tool's own
    assert granted_memory(alice_id, big_genome, backend="local") == 1024


def test_the_default_is_never_over_the_maximum(
    alice_id: int, big_genome: str, twenty_runs: list[float], defaults_from_usage: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(get_settings().resources, "recommend_margin", 200.0)
    assert granted_memory(alice_id, big_genome, backend="slurm") == 8192  # prodigal's max_memory_mb


def test_without_the_setting_or_runs_of_that_size_the_tools_own_memory(
    alice_id: int, uploaded: Callable[[str, bytes], str], big_genome: str, twenty_runs: list[float],
    defaults_from_usage: None, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    small = uploaded("small.fna", b">c\nATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA\n")
    assert granted_memory(alice_id, small, backend="slurm") == 1024  # no run had inputs up to 1 MB
    monkeypatch.setattr(get_settings().resources, "recommend_defaults", False)
    assert granted_memory(alice_id, big_genome, backend="slurm") == 1024


# --- requested against used ---------------------------------------------------------------------


def test_an_attempt_shows_what_it_was_given_against_what_it_used() -> None:
    record = AttemptRecord(
        attempt=1, backend="slurm", host="n",
        resources={"cpus": 1, "memory_mb": 1024, "time_limit_seconds": 3600, "gpus": 0},
        resource_usage={"wall_seconds": 36.0, "user_cpu_seconds": 30.0, "system_cpu_seconds": 6.0, "max_rss_mb": 40.96},
    )  # fmt: skip
    shown = {(row.resource, row.granted, row.used, row.share) for row in requested_vs_used(record)}
    assert shown == {
        ("memory", "1,024 MB", "41.0 MB", "4 %"),
        ("time", "3,600 s", "36.0 s", "1 %"),
        ("cpus", "1", "36.0 s CPU time", "1.00 busy on average"),
    }
    unmeasured = AttemptRecord(attempt=1, backend="local", host="n")
    assert {(row.granted, row.used, row.share) for row in requested_vs_used(unmeasured)} == {("-", "-", "")}


@pytest.fixture
def staff(db: None) -> Client:
    get_user_model().objects.create_superuser("root", password="a-long-password-1")
    client = Client()
    client.force_login(get_user_model().objects.get(username="root"))
    return client


def test_the_admin_shows_each_attempt_given_against_used(
    staff: Client, alice_id: int, big_genome: str, on_slurm: None
) -> None:
    calc = run_prodigal(alice_id, big_genome, 40.96)
    listing = staff.get("/admin/calculations/calculation/").content.decode()
    assert "41.0 MB / 1,024 MB" in listing
    page = staff.get(f"/admin/calculations/calculation/{calc.id}/change/").content.decode()
    assert '<th scope="row">memory: given, used</th><td>1,024 MB, 41.0 MB (4 %)</td>' in page
    assert '<th scope="row">time: given, used</th><td>3,600 s, 2.0 s (0 %)</td>' in page
