"""What a run's RO-Crate says, per kind: a tool's calculation and a TES task (Process Run Crate), a
pipeline with an edge and a map (Workflow Run Crate with the Provenance Run Crate's steps); which
files its zip holds; and that a bigger map costs no more queries."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calculations.crates import CrateKind, DataPolicy, crate_metadata, write_crate
from calculations.crates.graph import (
    CONTEXT,
    PROCESS_RUN_CRATE,
    PROVENANCE_RUN_CRATE,
    RO_CRATE,
    WORKFLOW_RO_CRATE,
    WORKFLOW_RUN_CRATE,
)
from calculations.models import File
from calculations.tests.crate_runs import (
    GENOME,
    finished_map,
    finished_pipeline,
    finished_tes_task,
    finished_tool_calculation,
    upload,
)
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db
Entity = dict[str, Any]


@pytest.fixture
def owner_id(db: None) -> int:
    user = get_user_model().objects.create(username="carol", email="carol@private.example.org")
    return int(user.pk)


def graph_of(kind: CrateKind, run_id: UUID, data: DataPolicy = "none") -> dict[str, Entity]:
    """The crate's entities by @id: each once, and every local reference (#…) to one of them."""
    metadata = json.loads(crate_metadata(kind, run_id, data))
    assert metadata["@context"] == CONTEXT
    graph: dict[str, Entity] = {}
    for entity in metadata["@graph"]:
        assert entity["@id"] not in graph, f"{entity['@id']} is written twice"
        graph[entity["@id"]] = entity
    for entity in graph.values():
        for value in entity.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and str(item.get("@id", "")).startswith("#"):
                    assert item["@id"] in graph, f"{entity['@id']} refers to {item['@id']}, which is not in the crate"
    return graph


def ids(value: Any) -> list[str]:
    return [item["@id"] for item in (value if isinstance(value, list) else [value])]


def typed(graph: dict[str, Entity], kind: str) -> list[Entity]:
    return [e for e in graph.values() if kind in (e["@type"] if isinstance(e["@type"], list) else [e["@type"]])]


def test_a_calculation_is_a_process_run_crate_with_its_tool_inputs_outputs_image_and_parameters(owner_id: int) -> None:
    genome = upload(owner_id, "genome.fna", GENOME)
    calc = finished_tool_calculation(owner_id, "prodigal", {"contigs": genome.id}, {"mode": "single"})
    graph = graph_of("calculation", calc.id)
    settings = get_settings()

    assert ids(graph["ro-crate-metadata.json"]["conformsTo"]) == [RO_CRATE]
    root = graph["./"]
    assert ids(root["conformsTo"]) == [PROCESS_RUN_CRATE] and graph[PROCESS_RUN_CRATE]["@type"] == "CreativeWork"
    assert root["license"] == {"@id": settings.crate.license} and settings.crate.license in graph
    assert graph[root["publisher"]["@id"]] == {
        "@id": root["publisher"]["@id"],
        "@type": "Organization",
        "name": settings.crate.publisher,
        "url": root["publisher"]["@id"],
    }
    assert root["datePublished"] and root["name"] and root["description"]

    [action] = typed(graph, "CreateAction")
    assert ids(root["mentions"]) == [action["@id"]]
    tool = graph[action["instrument"]["@id"]]
    assert (tool["@type"], tool["name"], tool["softwareVersion"]) == ("SoftwareApplication", "prodigal", "2.6.3")
    assert tool["url"].endswith("/api/v2/tools/prodigal") and tool["@id"] == f"{tool['url']}#2.6.3"
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus" and "error" not in action
    assert action["startTime"] <= action["endTime"]
    assert action["description"].startswith("prodigal")  # the argv

    [contigs] = [graph[i] for i in ids(action["object"]) if graph[i]["@type"] == "File"]
    assert (contigs["sha256"], contigs["contentSize"]) == (genome.sha256, str(genome.size))
    assert contigs["@id"] == contigs["contentUrl"] == f"{settings.public_url}/api/v2/files/{genome.id}/content"
    assert graph[contigs["exampleOfWork"]["@id"]]["name"] == "contigs"
    assert contigs["encodingFormat"] == "text/x-fasta" and contigs["sdDatePublished"]  # a web-based entity
    values = {graph[i]["name"]: graph[i] for i in ids(action["object"]) if graph[i]["@type"] == "PropertyValue"}
    assert set(values) == set(calc.params) and values["mode"]["value"] == "single"  # defaults too, as it ran
    mode = values["mode"]
    assert graph[mode["exampleOfWork"]["@id"]]["additionalType"] == "Text"

    outputs = {f.output_role: f for f in File.objects.filter(produced_by=calc)}
    results = {graph[i]["name"]: graph[i] for i in ids(action["result"])}
    assert {name: entity["sha256"] for name, entity in results.items()} == {f.name: f.sha256 for f in outputs.values()}
    assert {p["name"] for p in (graph[i] for i in ids(tool["output"]))} == {"proteins", "genes"}

    [image] = [graph[i] for i in ids(action["containerImage"])]
    assert image["@type"] == "ContainerImage" and len(image["sha256"]) == 64
    assert calc.provenance["image_digest"] == f"sha256:{image['sha256']}"
    usage = {graph[i]["name"]: graph[i] for i in ids(action["resourceUsage"])}
    assert usage["wall_seconds"]["value"] == 1.5 and usage["wall_seconds"]["propertyID"]

    agent = graph[action["agent"]["@id"]]
    assert (agent["@type"], agent["name"]) == ("Person", "carol") and root["author"] == action["agent"]
    assert b"private.example.org" not in crate_metadata("calculation", calc.id)  # no email leaves


def test_a_failed_calculation_says_so_with_its_error(owner_id: int) -> None:
    genome = upload(owner_id, "genome.fna", GENOME)
    calc = finished_tool_calculation(owner_id, "prodigal", {"contigs": genome.id}, {}, state="EXECUTOR_ERROR")
    [action] = typed(graph_of("calculation", calc.id), "CreateAction")
    assert action["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert action["error"] == "exit code 1: bad input" and "result" not in action


def test_a_tes_task_is_a_process_run_crate_of_its_executors_image_and_command(owner_id: int) -> None:
    calc = finished_tes_task(owner_id)
    graph = graph_of("calculation", calc.id)
    [action] = typed(graph, "CreateAction")
    assert graph[action["instrument"]["@id"]]["name"] == "ga4gh-tes"
    assert action["description"] == "grep -c '>' /data/in/genome.fna"
    assert {graph[i]["name"] for i in ids(action["containerImage"])} == {"emgapi/prodigal"}
    assert graph["./"]["name"] == "TES task count contigs"
    [count] = [graph[i] for i in ids(action["result"])]
    assert graph[action["instrument"]["@id"]]["@id"].split("#")[0].endswith("/ga4gh/tes/v1/service-info")
    assert count["name"] == "count.txt"


def test_a_pipeline_is_a_workflow_run_crate_whose_steps_and_edge_are_described(owner_id: int) -> None:
    run = finished_pipeline(owner_id)
    graph = graph_of("workflow-run", run.id)
    root = graph["./"]
    assert set(ids(root["conformsTo"])) == {
        PROCESS_RUN_CRATE,
        WORKFLOW_RUN_CRATE,
        PROVENANCE_RUN_CRATE,
        WORKFLOW_RO_CRATE,
    }
    assert ids(graph["ro-crate-metadata.json"]["conformsTo"]) == [RO_CRATE, WORKFLOW_RO_CRATE]
    workflow = graph[root["mainEntity"]["@id"]]
    assert workflow["@id"] == "pipeline.json" and "pipeline.json" in ids(root["hasPart"])
    assert workflow["version"].startswith("sha256:") and workflow["url"].endswith("/api/v2/workflows/pipeline")
    assert set(workflow["@type"]) == {"File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"}
    assert graph[workflow["programmingLanguage"]["@id"]]["@type"] == "ComputerLanguage"
    assert {graph[i]["name"] for i in ids(workflow["hasPart"])} == {"prodigal", "hmmsearch"}

    steps = {graph[i]["name"]: graph[i] for i in ids(workflow["step"])}
    assert (steps["genes"]["position"], steps["hits"]["position"]) == ("0", "1")
    assert graph[steps["hits"]["workExample"]["@id"]]["name"] == "hmmsearch"
    edges = {
        (graph[c["sourceParameter"]["@id"]]["name"], graph[c["targetParameter"]["@id"]]["name"])
        for c in (graph[i] for i in ids(steps["hits"]["connection"]))
    }
    assert ("proteins", "sequences") in edges  # genes.proteins -> hits.sequences
    assert ("hits.profile", "profile") in edges  # the run's input -> the tool's

    controls = typed(graph, "ControlAction")
    assert {graph[c["instrument"]["@id"]]["name"] for c in controls} == {"genes", "hits"}
    [organize] = typed(graph, "OrganizeAction")
    assert sorted(ids(organize["object"])) == sorted(c["@id"] for c in controls)
    run_action = graph[organize["result"]["@id"]]
    assert run_action["instrument"] == {"@id": "pipeline.json"} and ids(root["mentions"])[0] == run_action["@id"]
    assert {graph[i]["name"] for i in ids(run_action["object"])} == {"genome.fna", "demo.hmm"}
    # the run's results: what no step took (the proteins went on to hmmsearch)
    assert {graph[i]["name"] for i in ids(run_action["result"])} == {"genes.gff", "hits.tbl", "hmmsearch.txt"}
    [genes_action] = [graph[c["object"]["@id"]] for c in controls if c["instrument"]["@id"] == steps["genes"]["@id"]]
    [hits_action] = [graph[c["object"]["@id"]] for c in controls if c["instrument"]["@id"] == steps["hits"]["@id"]]
    proteins = next(i for i in ids(genes_action["result"]) if graph[i]["name"] == "proteins.faa")
    assert proteins in ids(hits_action["object"])  # one entity, the output of one and the input of the other


def test_a_failed_step_and_its_run_say_so(owner_id: int) -> None:
    run = finished_pipeline(owner_id, hits_fail=True)
    graph = graph_of("workflow-run", run.id)
    [organize] = typed(graph, "OrganizeAction")
    assert graph[organize["result"]["@id"]]["actionStatus"] == "http://schema.org/FailedActionStatus"
    failed = [c for c in typed(graph, "ControlAction") if c["actionStatus"] == "http://schema.org/FailedActionStatus"]
    assert [graph[c["instrument"]["@id"]]["name"] for c in failed] == ["hits"]


def test_a_map_has_one_step_and_an_action_per_element(owner_id: int) -> None:
    run = finished_map(owner_id, 3)
    graph = graph_of("workflow-run", run.id)
    [step] = typed(graph, "HowToStep")
    controls = typed(graph, "ControlAction")
    assert len(controls) == 3 and {c["instrument"]["@id"] for c in controls} == {step["@id"]}
    assert len(typed(graph, "CreateAction")) == 4  # the run's and its three steps'
    [organize] = typed(graph, "OrganizeAction")
    assert len(organize["object"]) == 3


def test_a_bigger_map_costs_no_more_queries(owner_id: int) -> None:
    small, big = finished_map(owner_id, 2), finished_map(owner_id, 12)
    counts = []
    for run in (small, big):
        with CaptureQueriesContext(connection) as queries:
            crate_metadata("workflow-run", run.id, "small")
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def _zip_of(kind: CrateKind, run_id: UUID, data: DataPolicy) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    write_crate(kind, run_id, data, buffer)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_the_zip_holds_the_files_the_data_option_asks_for(owner_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    genome = upload(owner_id, "genome.fna", GENOME)
    calc = finished_tool_calculation(owner_id, "prodigal", {"contigs": genome.id}, {})
    everything = _zip_of("calculation", calc.id, "all")
    assert everything.namelist()[0] == "ro-crate-metadata.json"
    assert everything.read("inputs/contigs/genome.fna") == GENOME
    proteins = File.objects.get(produced_by=calc, output_role="proteins")
    assert everything.read("outputs/proteins/proteins.faa").startswith(b">prodigal_proteins")
    assert len(everything.namelist()) == 5  # and README.md
    assert _zip_of("calculation", calc.id, "none").namelist() == ["ro-crate-metadata.json", "README.md"]

    # small: the smallest first, while they fit (here the two outputs, not the genome)
    monkeypatch.setattr(get_settings().crate, "max_data_bytes", proteins.size * 2 + 2)
    small = _zip_of("calculation", calc.id, "small")
    assert sorted(small.namelist()) == sorted(
        ["ro-crate-metadata.json", "README.md", "outputs/genes/genes.gff", "outputs/proteins/proteins.faa"]
    )
    graph = {e["@id"]: e for e in json.loads(small.read("ro-crate-metadata.json"))["@graph"]}
    left_out = graph[f"{get_settings().public_url}/api/v2/files/{genome.id}/content"]
    assert (left_out["sha256"], left_out["contentSize"]) == (genome.sha256, str(genome.size))


def test_a_workflow_runs_zip_holds_its_pipeline_and_each_steps_outputs(owner_id: int) -> None:
    run = finished_pipeline(owner_id)
    archive = _zip_of("workflow-run", run.id, "all")
    names = set(archive.namelist())
    assert json.loads(archive.read("pipeline.json")) == run.params
    assert {"steps/genes/0/proteins/proteins.faa", "steps/hits/0/hits/hits.tbl"} <= names
    assert sum(name.startswith("inputs/") for name in names) == 2
