import asyncio
import json
import logging
import random
from typing import Any, TypedDict

import pytest
from django.contrib.auth import get_user_model

from calculations.caching import compute_cache_key
from calculations.models import Calculation
from calculations.provenance import update_attempt
from calculations.states import RunState
from calculations.workdirs import staged_input_name
from conftest import ApiClient
from demo.synthetic import fasta, protein_family
from emgapiv2.config import BASE_DIR


class KeyArgs(TypedDict):
    """compute_cache_key's keyword arguments."""

    tool: str
    tool_version: str
    params: dict[str, Any]
    input_sha256s: dict[str, str]


BASE: KeyArgs = {
    "tool": "prodigal",
    "tool_version": "2.6.3",
    "params": {"mode": "meta", "table": 11},
    "input_sha256s": {"contigs": "a" * 64},
}


def test_key_ignores_parameter_order() -> None:
    reordered: KeyArgs = {**BASE, "params": {"table": 11, "mode": "meta"}}
    assert compute_cache_key(**BASE) == compute_cache_key(**reordered)


def test_key_changes_with_anything_that_changes_the_outputs() -> None:
    variants: list[KeyArgs] = [
        {**BASE, "tool": "hmmsearch"},
        {**BASE, "tool_version": "2.6.4"},
        {**BASE, "params": {"mode": "single", "table": 11}},
        {**BASE, "input_sha256s": {"contigs": "b" * 64}},
        {**BASE, "input_sha256s": {"other_role": "a" * 64}},
    ]
    keys = {compute_cache_key(**variant) for variant in variants} | {compute_cache_key(**BASE)}
    assert len(keys) == len(variants) + 1


def run_here(calculation_id: str) -> Calculation:
    """Run a calculation in this process on the local backend (no Prefect), as the worker would."""
    from workflows.backends import BACKENDS
    from workflows.execution.calculation_runs import CalculationRun

    execution = CalculationRun(calculation_id, logging.getLogger(__name__), backend_for=lambda kind: BACKENDS[kind]())  # type: ignore[arg-type]
    asyncio.run(execution.execute())
    return Calculation.objects.get(id=calculation_id)


@pytest.mark.parametrize(
    ("name", "staged"),
    [
        ("alice-secret-genome.fna", "contigs.fna"),
        ("reads.FQ.gz", "contigs.FQ.gz"),  # a compression suffix keeps the one before it
        ("archive.tar.bz2", "contigs.tar.bz2"),
        ("no-extension", "contigs"),
        ("odd.ext ension", "contigs"),
        ("a.very-long-and-telling-suffix", "contigs"),
        (".hidden", "contigs"),
        ("name.v2.smi", "contigs.smi"),
    ],
)
def test_an_input_is_staged_under_its_role_and_extension_only(name: str, staged: str) -> None:
    assert staged_input_name("contigs", name) == staged


@pytest.mark.django_db(transaction=True)
def test_a_cache_hit_shows_another_user_nothing_of_the_first_owners_file_names(
    alice: ApiClient, bob: ApiClient
) -> None:
    rng = random.Random(3)
    sequences = fasta({f"p{i}": p for i, p in enumerate(protein_family(rng, length=200, members=4, identity=0.8))})
    profile = (BASE_DIR / "demo" / "data" / "family.hmm").read_bytes()
    secret = "alice-secret-project"

    def submit(client: ApiClient, prefix: str) -> dict[str, Any]:
        inputs = {
            role: client.upload(f"{prefix}.{extension}", content).json()["id"]
            for role, extension, content in (("profile", "hmm", profile), ("sequences", "faa", sequences.encode()))
        }
        response = client.post("/tools/hmmsearch/calculations", {"inputs": inputs, "params": {}})
        assert response.status_code in (200, 202), response.content
        return dict(response.json())

    first = run_here(submit(alice, secret)["id"])
    assert first.state == "COMPLETE", first.error
    # what ran names the staged inputs by role, relative to the tool's working directory
    argv = first.provenance["attempts"][0]["argv"]
    assert argv[-2:] == ["../inputs/profile/profile.hmm", "../inputs/sequences/sequences.faa"]

    hit = submit(bob, "bobs")
    assert hit["cache_hit"] and hit["state"] == "COMPLETE"
    seen = [
        json.dumps(bob.get(f"/calculations/{hit['id']}").json()),
        json.dumps(bob.get(f"/calculations/{hit['id']}/logs").json()),
    ]
    for file_ids in hit["outputs"].values():
        for file_id in file_ids:
            seen.append(b"".join(bob.get(f"/files/{file_id}/content").streaming_content).decode())
    assert any("../inputs/sequences/sequences.faa" in text for text in seen)  # hmmsearch names its inputs
    for text in seen:
        assert secret not in text, text
    # (hmmsearch's table also says which directory it ran in, holding the first calculation's id)
    assert bob.get(f"/calculations/{hit['id']}").json()["provenance"]["attempts"][0]["argv"] == argv


@pytest.mark.django_db
def test_a_cache_hit_on_a_calculation_staged_with_its_owners_file_names_hides_them(
    alice_id: int, bob: ApiClient
) -> None:
    """Calculations run before inputs were staged by role recorded their owner's file names in argv."""
    from calculations.actions.followers import shared_provenance
    from calculations.tests.factories import make_calculation

    source = make_calculation(RunState.COMPLETE, username="alice")
    inputs = f"/data/calculations/{source.id}/attempt-1/inputs"
    source.provenance = update_attempt(
        {**source.provenance, "inputs": {"contigs": "a" * 64}},
        1,
        argv=["prodigal", "-i", f"{inputs}/contigs/alice-secret.fna", "-o", "genes.gff"],
    )
    bob_id = get_user_model().objects.get(username="bob").id
    argv = shared_provenance(source, bob_id)["attempts"][0]["argv"]
    assert argv == [
        "prodigal",
        "-i",
        "/data/calculations/(another user's calculation)/attempt-1/inputs/contigs/contigs.fna",
        "-o",
        "genes.gff",
    ]
    assert shared_provenance(source, source.owner_id)["attempts"][0]["argv"][2].endswith("alice-secret.fna")
