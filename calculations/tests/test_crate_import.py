"""POST /crates: a crate another user exported, run here as the importing user's calculation or
workflow run that verifies the crate's outputs; and every crate that cannot be run (hostile zips,
crates that do not conform, tools or inputs not here) a 422 listing each problem, with nothing left
behind: no file rows, no blobs, no runs, no spooled files. The worker's side is played by the actions."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from calculations import actions
from calculations.crates import write_crate
from calculations.crates.imports import CrateRefused, open_crate_zip
from calculations.images import register_image_lookup
from calculations.models import Calculation, File, WorkflowRun
from calculations.orchestrator import WorkflowInfo
from calculations.policies import AttemptEnd
from calculations.storage import get_storage
from calculations.tests.crate_runs import (
    GENOME,
    end_workflow_run,
    finished_map,
    finished_pipeline,
    finished_tes_task,
    finished_tool_calculation,
    started_workflow_run,
    upload,
)
from conftest import ApiClient
from emgapiv2.config import CrateSettings, get_settings

pytestmark = pytest.mark.django_db
GENOME_PATH = "inputs/contigs/genome.fna"


@pytest.fixture(autouse=True)
def images() -> Iterator[None]:
    """The engine holds each tool's image at the digest crate_runs.finish_calculation records."""
    previous = register_image_lookup(lambda name: "sha256:" + hashlib.sha256(name.encode()).hexdigest())
    yield
    register_image_lookup(previous)


def _crate(kind: str, run_id: Any, data: str = "all") -> bytes:
    out = io.BytesIO()
    write_crate(kind, run_id, data, out)  # type: ignore[arg-type]
    return out.getvalue()


def _import(client: ApiClient, content: bytes) -> Any:
    return client.client.post("/api/v2/crates", {"crate": SimpleUploadedFile("run.crate.zip", content)})


def _prodigal(alice_id: int) -> Calculation:
    genome = upload(alice_id, "genome.fna", GENOME)
    return finished_tool_calculation(alice_id, "prodigal", {"contigs": genome.id}, {"mode": "meta"})


def _finish_with(calc_id: UUID, outputs: list[tuple[str, str, bytes]]) -> Calculation:
    """What the worker does: run it in the image the crate names, ending with these outputs."""
    calc = Calculation.objects.get(id=calc_id)
    image = f"emgapi/{calc.tool}:{calc.tool_version}"
    actions.do_start_calculation(calc.id, 1, flow_run_id=uuid4(), backend="container", host="h", workdir="/w")
    digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    actions.do_mark_running(calc.id, 1, job_id="1", argv=[calc.tool], executable=calc.tool, image=image,
                            image_digest=digest)  # fmt: skip
    blobs = [
        actions.OutputBlob(role, name, get_storage().put(io.BytesIO(content)).sha256, len(content))
        for role, name, content in outputs
    ]
    outcome = actions.JobOutcome(0, {}, None, None)
    return actions.do_end_attempt(calc.id, 1, AttemptEnd.SUCCEEDED, outputs=blobs, outcome=outcome)


def _outputs_of(calc: Calculation) -> list[tuple[str, str, bytes]]:
    storage = get_storage()
    return [
        (file.output_role, file.name, b"".join(storage.iter_chunks(file.sha256)))
        for file in calc.output_files.order_by("output_role")
    ]


def test_another_users_calculation_runs_here_as_mine_and_verifies_identical(alice_id: int, bob: ApiClient) -> None:
    original = _prodigal(alice_id)
    response = _import(bob, _crate("calculation", original.id))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "calculation" and body["state"] == "QUEUED"
    assert body["url"].endswith(f"/api/v2/calculations/{body['id']}")
    assert body["source"].endswith(f"/api/v2/calculations/{original.id}")
    new = Calculation.objects.get(id=body["id"])
    assert new.owner.username == "bob" and new.cached_from_id is None
    assert (new.tool, new.tool_version, new.params) == (original.tool, original.tool_version, original.params)
    # the genome came in the crate: now bob's own file, the same bytes
    genome = new.inputs.values_list("file__owner__username", "file__sha256").get()
    assert genome == ("bob", original.inputs.values_list("file__sha256", flat=True).get())
    first = new.events.order_by("id").first()
    assert first is not None and first.reason == f"imported from the crate of {body['source']}"

    _finish_with(new.id, _outputs_of(original))
    verdict = bob.get(f"/calculations/{new.id}").json()["verdict"]
    assert verdict["outcome"] == "identical", verdict
    assert {(o["role"], o["status"]) for o in verdict["outputs"]} == {("genes", "identical"), ("proteins", "identical")}


def test_an_output_that_differs_from_the_crates_is_named(alice_id: int, bob: ApiClient) -> None:
    original = _prodigal(alice_id)
    new_id = _import(bob, _crate("calculation", original.id)).json()["id"]
    outputs = [
        (role, name, content + b"x" if role == "genes" else content) for role, name, content in _outputs_of(original)
    ]
    _finish_with(UUID(new_id), outputs)
    verdict = bob.get(f"/calculations/{new_id}").json()["verdict"]
    assert verdict["outcome"] == "different"
    assert verdict["summary"].startswith("different: genes/") and "proteins" not in verdict["summary"]


def test_a_crate_without_data_uses_the_importers_own_file_of_the_same_sha256(alice_id: int, bob: ApiClient) -> None:
    original = _prodigal(alice_id)
    crate = _crate("calculation", original.id, data="none")
    response = _import(bob, crate)  # only alice holds the genome: never used for bob
    assert response.status_code == 422
    assert any(problem.startswith("missing input: input 'contigs'") for problem in response.json()["problems"])

    mine = bob.upload("my-genome.fna", GENOME).json()["id"]
    files = File.objects.count()
    response = _import(bob, crate)
    assert response.status_code == 202, response.content
    assert File.objects.count() == files  # nothing new: bob's own file is the input
    assert str(Calculation.objects.get(id=response.json()["id"]).inputs.get().file_id) == mine


def test_an_input_collected_before_its_row_committed_is_stored_again(
    alice_id: int, bob: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orphan sweep, or another import of the same crate undone, may delete a blob between its
    storing and its row: the imported file must still have its bytes, as an upload's does."""
    from calculations.actions import imports

    register = actions.do_register_blob

    def collected_first(owner_id: int, name: str, info: Any, **kwargs: Any) -> File:
        get_storage().delete(info.sha256)
        return register(owner_id, name, info, **kwargs)

    monkeypatch.setattr(imports, "do_register_blob", collected_first)
    response = _import(bob, _crate("calculation", _prodigal(alice_id).id))
    assert response.status_code == 202, response.content
    genome = File.objects.get(used_by__calculation_id=response.json()["id"])
    assert genome.owner.username == "bob" and get_storage().exists(genome.sha256)
    assert b"".join(get_storage().iter_chunks(genome.sha256)) == GENOME


def test_a_pipelines_crate_runs_as_a_workflow_run_expecting_each_steps_outputs(
    alice_id: int, bob: ApiClient, workflow_catalogue: Any
) -> None:
    original = finished_pipeline(alice_id)
    response = _import(bob, _crate("workflow-run", original.id))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "workflow-run" and body["source"].endswith(f"/api/v2/workflow-runs/{original.id}")
    run = WorkflowRun.objects.get(id=body["id"])
    assert run.owner.username == "bob" and run.workflow == "pipeline"
    # the pipeline names bob's files now, made from the crate's bytes
    refs = {step["inputs"]["contigs" if name == "genes" else "profile"] for name, step in run.params["steps"].items()}
    bobs = {f"file:{file_id}" for file_id in File.objects.filter(owner=run.owner).values_list("id", flat=True)}
    assert refs <= bobs and len(refs) == 2
    assert run.params["steps"]["hits"]["inputs"]["sequences"] == "genes.proteins"
    assert sorted(run.expected_steps or {}) == ["genes[0]", "hits[0]"]
    genes = original.steps.get(step="genes")
    expected = run.expected_steps["genes[0]"]["outputs"]  # type: ignore[index]
    assert {role: [f["sha256"] for f in files] for role, files in expected.items()} == {
        file.output_role: [file.sha256] for file in genes.output_files.all()
    }


def test_a_maps_crate_expects_each_element_and_names_the_importers_files(
    alice_id: int, bob: ApiClient, workflow_catalogue: Any
) -> None:
    original = finished_map(alice_id, 3)
    response = _import(bob, _crate("workflow-run", original.id))
    assert response.status_code == 202, response.content
    run = WorkflowRun.objects.get(id=response.json()["id"])
    each = run.params["steps"]["genes"]["inputs"]["contigs"]["each"]
    bobs = File.objects.filter(owner=run.owner)
    assert each == [f"file:{file_id}" for file_id in bobs.order_by("name").values_list("id", flat=True)]
    assert sorted(run.expected_steps or {}) == ["genes[0]", "genes[1]", "genes[2]"]


def test_an_ops_flows_crate_runs_only_where_the_same_source_is_deployed(
    alice_id: int, bob: ApiClient, workflow_catalogue: list[Any], tmp_path: Path
) -> None:
    source = tmp_path / "count.py"
    source.write_text("def count(n: int, names: list[str]) -> int:\n    return n\n")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "names": {"type": "array"}}}
    workflow_catalogue.append(WorkflowInfo(name="count", description="", parameters_schema=schema, source_file=source))
    original = end_workflow_run(started_workflow_run(alice_id, "count", {"n": 3, "names": ["a", "b"]}))
    crate = _crate("workflow-run", original.id)

    response = _import(bob, crate)
    assert response.status_code == 202, response.content
    run = WorkflowRun.objects.get(id=response.json()["id"])
    assert (run.workflow, run.params, run.expected_steps) == ("count", {"n": 3, "names": ["a", "b"]}, {})

    source.write_text("def count(n: int, names: list[str]) -> int:\n    return n + 1\n")
    response = _import(bob, crate)
    assert response.status_code == 422
    assert "workflow 'count' is deployed here from other source (sha256 " in response.json()["detail"]
    workflow_catalogue.pop()
    response = _import(bob, crate)
    assert response.status_code == 422 and "workflow 'count' not found" in response.json()["detail"]


def test_the_run_a_crate_records_is_quoted_no_longer_than_a_url(alice_id: int, bob: ApiClient) -> None:
    """The crate names it (its URL where it ran): the answer and the new run's first event quote it,
    so a 2 MB identifier made a 2 MB answer and event; an identifier that is no string is not quoted."""
    crate = _crate("calculation", _prodigal(alice_id).id)

    def identified(identifier: Any) -> Callable[[dict[str, bytes], dict[str, Any]], None]:
        def edit(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
            next(entity for entity in graph.values() if entity["@type"] == "CreateAction")["identifier"] = identifier

        return edit

    long = random.Random(0).randbytes(1024**2).hex()  # (random: the metadata's ratio stays low)
    response = _import(bob, _rebuild(crate, identified(long)))
    assert response.status_code == 202, response.content[:300]
    source = response.json()["source"]
    assert len(source) == 2000 and long.startswith(source.split("/api/v2/calculations/")[1])
    reason = Calculation.objects.get(id=response.json()["id"]).events.order_by("id").values_list("reason").first()
    assert reason == (f"imported from the crate of {source}",)
    response = _import(bob, _rebuild(crate, identified({"not": "a string"})))
    assert response.status_code == 202 and response.json()["source"].startswith("prodigal ")


def test_a_tool_name_too_long_to_be_one_is_not_quoted_whole(alice_id: int, bob: ApiClient) -> None:
    """Each problem about a tool quotes its name and version: a 1 MB name made a 422 of megabytes."""
    long = random.Random(0).randbytes(512 * 1024).hex()  # (random: the metadata's ratio stays low)

    def named(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
        _tool(graph)["name"] = long

    response = _import(bob, _rebuild(_crate("calculation", _prodigal(alice_id).id), named))
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "the calculation: its tool's name or softwareVersion is longer than 200 characters"
    ]


def test_an_import_with_an_idempotency_key_is_answered_once(alice_id: int, bob: ApiClient) -> None:
    crate = _crate("calculation", _prodigal(alice_id).id)
    key = {"HTTP_IDEMPOTENCY_KEY": "import-1"}
    first = bob.client.post("/api/v2/crates", {"crate": SimpleUploadedFile("a.zip", crate)}, **key)  # type: ignore[arg-type]
    again = bob.client.post("/api/v2/crates", {"crate": SimpleUploadedFile("a.zip", crate)}, **key)  # type: ignore[arg-type]
    assert first.status_code == again.status_code == 202, first.content
    assert first.json()["id"] == again.json()["id"]
    assert Calculation.objects.filter(owner__username="bob").count() == 1


def test_a_tes_tasks_crate_is_refused_saying_why(alice_id: int, bob: ApiClient) -> None:
    task = finished_tes_task(alice_id)
    response = _import(bob, _crate("calculation", task.id))
    assert response.status_code == 422
    assert "GA4GH TES task: it is not imported" in response.json()["detail"]


# --- hostile and wrong crates: a 422 listing every problem, and nothing left behind ---------------


def _rebuild(content: bytes, edit: Callable[[dict[str, bytes], dict[str, Any]], None]) -> bytes:
    """The crate's zip made again after `edit` changed its entries or its metadata's graph (by @id)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(entries["ro-crate-metadata.json"])
    graph = {entity["@id"]: entity for entity in document["@graph"]}
    edit(entries, graph)
    document["@graph"] = list(graph.values())
    entries["ro-crate-metadata.json"] = json.dumps(document).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def _tool(graph: dict[str, Any]) -> dict[str, Any]:
    return next(entity for entity in graph.values() if entity["@type"] == "SoftwareApplication")


def _with_entry(name: str, data: bytes, mode: int = 0o100644) -> Callable[[bytes], bytes]:
    def add(content: bytes) -> bytes:
        out = io.BytesIO(content)
        with warnings.catch_warnings(), zipfile.ZipFile(out, "a") as archive:
            warnings.simplefilter("ignore")  # (a name twice is one of the cases)
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
        return out.getvalue()

    return add


def _replacing(name: str, data: bytes) -> Callable[[bytes], bytes]:
    def replace(content: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            entries = {entry: archive.read(entry) for entry in archive.namelist()}
        entries[name] = data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for entry, value in entries.items():
                archive.writestr(entry, value)
        return out.getvalue()

    return replace


def _bomb(content: bytes) -> bytes:
    out = io.BytesIO(content)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.bin", b"\0" * (8 * 1024**2))
    return out.getvalue()


def _lying_size(content: bytes) -> bytes:
    """The genome's entry, its headers (local and central) claiming fewer bytes than it holds."""
    data = bytearray(content)
    name = GENOME_PATH.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[start + offset : start + offset + 4] = (10).to_bytes(4, "little")
            start += 4
    return bytes(data)


def _wrong_version(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    _tool(graph)["softwareVersion"] = "9.9.9"


def _unknown_tool(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    _tool(graph)["name"] = "nosuchtool"


def _wrong_bytes(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    entries[GENOME_PATH] = GENOME.replace(b"ATG", b"TTT")


def _no_instrument(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    next(entity for entity in graph.values() if entity["@type"] == "CreateAction").pop("instrument")


def _no_profile(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    graph["./"]["conformsTo"] = {"@id": "https://example.org/some-profile"}


def _no_sha256(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    next(entity for entity in graph.values() if entity.get("name") == "genes.gff").pop("sha256")


def _not_fasta(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    """Bytes that match their sha256 but are no FASTA: found only once they are stored (the format check)."""
    entries[GENOME_PATH] = b"this is not a genome\n"
    genome = graph[GENOME_PATH]
    genome["sha256"] = hashlib.sha256(entries[GENOME_PATH]).hexdigest()
    genome["contentSize"] = str(len(entries[GENOME_PATH]))


def _several(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
    _wrong_version(entries, graph)
    _wrong_bytes(entries, graph)
    entries["../escape.txt"] = b"out"


HOSTILE: dict[str, tuple[Callable[[bytes], bytes], list[str]]] = {
    "not a zip": (lambda content: b"just some text", ["the upload is not a zip file"]),
    "no metadata": (
        lambda content: content.replace(b"ro-crate-metadata.json", b"ro-crate-metadata.jsox"),
        ["the zip has no ro-crate-metadata.json at its root"],
    ),
    "metadata not JSON": (
        _replacing("ro-crate-metadata.json", b'{"@graph": [nope'), ["ro-crate-metadata.json cannot be read"]
    ),
    "zip bomb": (_bomb, ["entry 'bomb.bin' unzips to 8388608 bytes from", "(a zip bomb?)"]),
    "lying size": (_lying_size, [f"entry '{GENOME_PATH}'"]),
    "../ path": (_with_entry("../../etc/cron.d/evil", b"x"), ["entry '../../etc/cron.d/evil' leaves the crate"]),
    "absolute path": (_with_entry("/etc/evil", b"x"), ["entry '/etc/evil' is an absolute path"]),
    "backslash": (_with_entry("..\\evil", b"x"), ["entry '..\\\\evil' has a backslash in its path"]),
    "symlink": (_with_entry("inputs/link", b"/etc/passwd", 0o120777), ["entry 'inputs/link' is a symbolic link"]),
    "twice": (_with_entry(GENOME_PATH, GENOME), [f"entry '{GENOME_PATH}' is in the zip twice"]),
    "unknown tool": (lambda c: _rebuild(c, _unknown_tool), ["nosuchtool 2.6.3 is not registered here (no tool"]),
    "wrong version": (lambda c: _rebuild(c, _wrong_version), ["prodigal 9.9.9 is not registered here (have 2.6.3)"]),
    "wrong sha256": (lambda c: _rebuild(c, _wrong_bytes), [f"data file '{GENOME_PATH}': its bytes' sha256 is"]),
    "not fasta": (lambda c: _rebuild(c, _not_fasta), ["input 'contigs': file 'genome.fna'"]),
    "no instrument": (lambda c: _rebuild(c, _no_instrument), ["its instrument is not a SoftwareApplication"]),
    "no profile": (lambda c: _rebuild(c, _no_profile), ["does not conform to the Process Run Crate"]),
    "no sha256": (lambda c: _rebuild(c, _no_sha256), ["output 'genes': file", "has no sha256"]),
    "several": (
        lambda c: _rebuild(c, _several),
        ["prodigal 9.9.9 is not registered here", f"data file '{GENOME_PATH}': its bytes' sha256",
         "'../escape.txt' leaves"],
    ),
}  # fmt: skip


def _left_behind() -> tuple[int, int, int, frozenset[Path], frozenset[Path]]:
    settings = get_settings()
    blobs = frozenset(path for path in settings.blob_root.rglob("*") if path.is_file())
    spooled = frozenset(settings.spool_dir.rglob("*")) if settings.spool_dir.exists() else frozenset()
    return File.objects.count(), Calculation.objects.count(), WorkflowRun.objects.count(), blobs, spooled


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_or_wrong_crate_is_a_422_listing_each_problem_and_leaves_nothing(
    case: str, alice_id: int, bob: ApiClient
) -> None:
    make, expected = HOSTILE[case]
    crate = make(_crate("calculation", _prodigal(alice_id).id))
    before = _left_behind()
    response = _import(bob, crate)
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["detail"].startswith("the crate cannot be run here: ")
    for text in expected:
        assert any(text in problem for problem in body["problems"]), (text, body["problems"])
    assert _left_behind() == before


def test_an_image_digest_not_here_and_too_many_entries_are_422s(
    alice_id: int, bob: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    crate = _crate("calculation", _prodigal(alice_id).id)
    previous = register_image_lookup(lambda name: "sha256:" + "0" * 64)
    try:
        response = _import(bob, crate)
    finally:
        register_image_lookup(previous)
    assert response.status_code == 422
    assert "is not available (the tool's image is now sha256:000" in response.json()["detail"]

    monkeypatch.setattr(get_settings().crate, "import_max_entries", 3)
    before = _left_behind()
    response = _import(bob, crate)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "the zip has more than 3 entries; at most 3 are allowed (EMGAPI_CRATE__IMPORT_MAX_ENTRIES)"
    ]
    assert _left_behind() == before


def _table_only(names: list[bytes]) -> bytes:
    """A zip of nothing but its table of entries (all `zipfile` reads to list them), whose end record
    claims one entry."""
    table = b"".join(
        struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0,
                    0, 0, 0, 0) + name
        for name in names
    )  # fmt: skip
    return table + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(table), 0, 0)


def test_a_zip_listing_too_many_entries_is_refused_before_they_are_parsed(tmp_path: Path) -> None:
    """A 5 MB zip can list 100,000 entries: `zipfile` would make an object of each (a 50 MB one: a
    million, 12 s and 400 MB) before their count is checked; the table is counted first."""
    crate = tmp_path / "table.zip"
    crate.write_bytes(_table_only([b"a"] * 100_000))
    tracemalloc.start()
    try:
        with pytest.raises(CrateRefused) as refused:
            open_crate_zip(crate, CrateSettings(import_max_entries=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.problems == [
        "the zip has more than 10000 entries; at most 10000 are allowed (EMGAPI_CRATE__IMPORT_MAX_ENTRIES)"
    ]
    assert peak < 1024**2
    # a few entries, with names of 60,000 bytes: the table is bounded by the bytes it may hold too
    crate.write_bytes(_table_only([b"a" * 60_000] * 3))
    with pytest.raises(CrateRefused) as refused:
        open_crate_zip(crate, CrateSettings(import_max_entries=10))
    assert refused.value.problems == [
        "the zip's table of entries is 180138 bytes; at most 40960 are allowed (4096 for each of "
        "EMGAPI_CRATE__IMPORT_MAX_ENTRIES, 10)"
    ]


def test_an_input_larger_than_an_upload_may_be_is_refused(
    alice_id: int, bob: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crate is one more way to send a file: none of its inputs may be larger than an upload may."""
    crate = _crate("calculation", _prodigal(alice_id).id)
    monkeypatch.setattr(get_settings(), "max_upload_bytes", len(GENOME) - 1)
    before = _left_behind()
    response = _import(bob, crate)
    assert response.status_code == 422, response.content
    assert response.json()["problems"] == [
        f"data file '{GENOME_PATH}' is {len(GENOME)} bytes; the limit is {len(GENOME) - 1} bytes per file "
        "(EMGAPI_MAX_UPLOAD_BYTES)"
    ]
    assert _left_behind() == before


def _overlapping(count: int, kernel: bytes) -> bytes:
    """A zip whose `count` entries share one compressed kernel (D. Fifield's "better zip bomb"): each
    entry's data quotes the next entry's local header in a stored block, then runs on into it. Every
    entry's ratio is the kernel's; the zip unzips to `count` times the kernel from one copy of it."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = squeeze.compress(kernel) + squeeze.flush()
    names = [f"data/{index:03d}".encode() for index in range(count)]
    headers: list[bytes] = []
    sizes = [(len(stream), len(kernel))]  # (compressed, unzipped) from the last entry back
    for index in reversed(range(count)):
        compressed, unzipped = sizes[-1]
        headers.insert(0, struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 0, 0, compressed, unzipped,
                                      len(names[index]), 0) + names[index])  # fmt: skip
        sizes.append((compressed + 5 + len(headers[0]), unzipped + len(headers[0])))
    body, offsets = b"", []
    for index, header in enumerate(headers):
        offsets.append(len(body))
        quoted = len(headers[index + 1]) if index + 1 < count else 0
        body += header + (bytes([0]) + struct.pack("<HH", quoted, quoted ^ 0xFFFF) if quoted else b"")
    body += stream
    table = b"".join(
        struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 8, 0, 0, 0, *sizes[count - index], len(name),
                    0, 0, 0, 0, 0o100644 << 16, offset) + name
        for index, (name, offset) in enumerate(zip(names, offsets, strict=True))
    )  # fmt: skip
    return body + table + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(table), len(body), 0)


def test_a_zip_whose_entries_share_their_bytes_is_a_bomb_by_its_size(tmp_path: Path) -> None:
    """Each entry unzips 1 MiB at a ratio of about 4, all from the one kernel: 60 MiB from a 260 KiB zip.
    The zip's ratio counts its own size, not the sum of its entries' (which counts the kernel 60 times)."""
    crate = tmp_path / "overlapping.zip"
    kernel = random.Random(0).randbytes(1024**2).translate(b"ACGT" * 64)  # (2 bits a byte: a ratio of about 4)
    crate.write_bytes(_overlapping(60, kernel))
    zipped, problems = open_crate_zip(crate, CrateSettings())
    zipped.close()
    assert problems == [
        f"the zip unzips to {sum(i.file_size for i in zipped.entries.values())} bytes from "
        f"{crate.stat().st_size}: past the highest ratio allowed"
    ]


def test_metadata_denser_than_an_exported_crates_is_refused_as_it_is_parsed(
    alice_id: int, bob: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny objects ({"@id": "#1"}) parse to 20 times their bytes: 64 MiB of them took 10 s and 1.3 GB.
    The metadata may hold as many objects and members as twice as much of an exported crate's does."""
    crate = _crate("calculation", _prodigal(alice_id).id)

    def tiny(entries: dict[str, bytes], graph: dict[str, Any]) -> None:
        graph.update({f"#{index:x}": {"@id": f"#{index:x}"} for index in range(40_000)})  # (700 KB)

    monkeypatch.setattr(get_settings().crate, "import_max_metadata_bytes", 1024**2)
    before = _left_behind()
    response = _import(bob, _rebuild(crate, tiny))
    assert response.status_code == 422, response.content[:300]
    assert response.json()["problems"] == [
        "ro-crate-metadata.json cannot be read: it holds more than 16384 objects or 43690 members, more than an "
        "exported crate's 1048576 bytes do (EMGAPI_CRATE__IMPORT_MAX_METADATA_BYTES)"
    ]
    assert _left_behind() == before
    assert _import(bob, crate).status_code == 202  # (a crate as exported, by the same bounds)


def test_a_crate_larger_than_the_limit_is_a_413_before_it_is_read(
    alice_id: int, bob: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    crate = _crate("calculation", _prodigal(alice_id).id)
    monkeypatch.setattr(get_settings().crate, "import_max_zip_bytes", 1024)
    response = _import(bob, crate + b"\0" * (128 * 1024))
    assert response.status_code == 413
    assert "EMGAPI_CRATE__IMPORT_MAX_ZIP_BYTES" in response.json()["detail"]


def test_a_request_without_the_zip_says_how_to_send_it(bob: ApiClient) -> None:
    response = bob.post("/crates", {"crate": "x"})
    assert response.status_code == 422 and "multipart/form-data" in response.json()["detail"]
    response = bob.client.post("/api/v2/crates", {"file": SimpleUploadedFile("a.zip", b"x")})
    assert response.status_code == 422 and "one field named 'crate'" in response.json()["detail"]


def test_a_chunked_or_unreadable_form_is_answered_in_json_saying_so(bob: ApiClient) -> None:
    """A chunked body has no Content-Length, and WSGI reads it as empty (it was answered "send one
    field named 'crate'"); a form without a boundary, or of too many parts, was Django's HTML 400."""
    chunked = bob.client.generic(
        "POST", "/api/v2/crates", b"", "multipart/form-data; boundary=x", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert chunked.status_code == 411
    assert chunked.json()["detail"] == "send the body with a Content-Length header: a chunked body is not read"
    no_boundary = bob.client.generic("POST", "/api/v2/crates", b"PK\x03\x04", "multipart/form-data")
    assert no_boundary.status_code == 422
    assert no_boundary.json()["detail"].startswith("the multipart form cannot be read (Invalid boundary")
    parts = {f"crate{i}": SimpleUploadedFile(f"{i}.zip", b"x") for i in range(200)}
    too_many = bob.client.post("/api/v2/crates", parts)
    assert too_many.status_code == 422
    assert "the multipart form cannot be read (The number of files exceeded" in too_many.json()["detail"]
    # with an Idempotency-Key, its fingerprint reads the form first
    keyed = bob.client.post("/api/v2/crates", parts, HTTP_IDEMPOTENCY_KEY="many")
    assert keyed.status_code == 400
    assert keyed.json()["detail"].startswith("the multipart form cannot be read (The number of files exceeded")


def test_a_crate_with_a_thousand_problems_lists_the_first_hundred_and_counts_the_rest() -> None:
    """A map's crate without its data names every genome missing: the 422 stays small."""
    from calculations.errors import ManyInvalidInputs

    refused = ManyInvalidInputs("the crate cannot be run here", [f"missing input: genome {i}" for i in range(1000)])
    assert len(refused.problems) == 101 and refused.problems[-1] == "and 900 more problems like these"
    assert (
        str(refused).startswith("the crate cannot be run here: missing input: genome 0; ") and len(str(refused)) < 200
    )
    # a problem quoting a value of the crate whole (a parameter's name, in pydantic's words) is cut short
    refused = ManyInvalidInputs("the crate cannot be run here", [f"parameter {'x' * 10**6}: Extra inputs"] * 2)
    assert [len(problem) for problem in refused.problems] == [1000, 1000] and refused.problems[0].endswith("x…")
    assert len(str(refused)) < 2100
