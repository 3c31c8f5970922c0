"""A workflow run as a Workflow Run Crate 0.5 with the Provenance Run Crate's detail: the workflow
(the pipeline's JSON, or the ops flow's description) is the mainEntity, a `ComputationalWorkflow`
with a `HowToStep` per step; the run is a `CreateAction` of it, each step's calculation a
`CreateAction` of its tool (as in a calculation's crate) under a `ControlAction` of its step, all
under one `OrganizeAction` of the engine. Where a step took another's output, a
`ParameterConnection` joins the two tools' parameters (a pipeline's edges, found in the data).

Written as it is read: the steps, their inputs and their outputs are three ordered streams
merged by calculation (`.values()` iterators, no model instances), so a 1,000-step map's crate
costs a few queries and memory for ids only. Files: the run's inputs under inputs/<file id>/<name>,
each step's outputs under steps/<step>/<index>/<role>/<name>."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Container, Iterator
from importlib.metadata import PackageNotFoundError, version
from itertools import chain, groupby
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django.db.models import Min, Q

from calculations.crates.graph import (
    PROCESS_RUN_CRATE,
    PROVENANCE_RUN_CRATE,
    WORKFLOW_RO_CRATE,
    WORKFLOW_RUN_CRATE,
    CrateBuilder,
    Entity,
    RefStream,
    as_row,
    as_rows,
    choose_small,
    iso,
    local_id,
    ref,
    refs,
    safe_name,
)
from calculations.crates.processes import (
    CALCULATION_FIELDS,
    ToolShapes,
    action_entities,
    action_id,
    input_parameter,
    is_failed,
    output_parameter,
    status_of,
    tool_entities,
    tool_id,
)
from calculations.models import Calculation, CalculationInput, File, WorkflowRun
from calculations.orchestrator import get_orchestrator
from calculations.workflow_params import PIPELINE
from emgapiv2.config import BASE_DIR, get_settings

logger = logging.getLogger(__name__)
_CHUNK = 100  # rows per fetch of each stream: its rows (provenance included) are what a step costs in memory


def step_path(step: str, index: int | None, role: str, name: str) -> str:
    return f"steps/{safe_name(step)}/{index or 0}/{safe_name(role)}/{safe_name(name)}"


def input_path(file_id: UUID, name: str) -> str:
    return f"inputs/{file_id}/{safe_name(name)}"


def _file_parameter(slot: str, name: str) -> dict[str, Any]:
    """The workflow's own input or output slot: a FormalParameter of a file, named `step.role`."""
    return {"@id": slot, "@type": "FormalParameter", "name": name, "additionalType": "File"}


def _workflow_input(step: str, role: str) -> str:
    return local_id("workflow", "inputs", f"{step}.{role}")


def _workflow_output(step: str, role: str) -> str:
    return local_id("workflow", "outputs", f"{step}.{role}")


def _engine_version() -> str:
    try:
        return version("prefect")
    except PackageNotFoundError:
        return "unknown"


def _flow_source(workflow: str) -> Path | None:
    """The file an ops flow is defined in, as deployed now, if this host has it (best effort: the
    crate stands without it, so an orchestrator that cannot answer leaves it out)."""
    try:
        info = next((info for info in get_orchestrator().workflows() if info.name == workflow), None)
    except Exception:  # Prefect unreachable, or its answer unreadable: the crate does without
        logger.warning("the workflows' catalogue is unavailable: the crate of a %s run holds no flow source", workflow)
        return None
    if info is None or info.source_file is None:
        return None
    path = info.source_file if info.source_file.is_absolute() else BASE_DIR / info.source_file
    return path if path.is_file() else None


def _input_ids(builder: CrateBuilder, workflow_run_id: UUID) -> Iterator[str]:
    """The @ids of the run's own inputs (files no step of it produced), in the order they were written."""
    rows = (
        CalculationInput.objects.filter(calculation__workflow_run_id=workflow_run_id, file_id__isnull=False)
        .exclude(file__produced_by__workflow_run_id=workflow_run_id)
        .order_by("file_id")
        .values("file_id", "file__name")
        .distinct()
    )
    for row in as_rows(rows.iterator(chunk_size=_CHUNK)):
        yield builder.file_id(row["file_id"], input_path(row["file_id"], row["file__name"]))


def _output_ids(
    builder: CrateBuilder, workflow_run_id: UUID, leaving_out: Container[tuple[str, str]] = ()
) -> Iterator[str]:
    """The @ids of the steps' outputs, but those of the (step, role)s `leaving_out`."""
    rows = (
        File.objects.filter(produced_by__workflow_run_id=workflow_run_id)
        .order_by("produced_by__step", "produced_by__step_index", "produced_by_id", "output_role", "name", "id")
        .values("id", "name", "output_role", "produced_by__step", "produced_by__step_index")
    )
    for row in as_rows(rows.iterator(chunk_size=_CHUNK)):
        step, role = row["produced_by__step"], row["output_role"]
        if (step, role) not in leaving_out:
            yield builder.file_id(row["id"], step_path(step, row["produced_by__step_index"], role, row["name"]))


def _step_ids(workflow_run_id: UUID, id_of: Callable[[UUID], str]) -> Iterator[str]:
    """An @id for each step (its action, its control action), in the order they were written."""
    steps = Calculation.objects.filter(workflow_run_id=workflow_run_id).order_by("step", "step_index", "id")
    for calculation_id in steps.values_list("id", flat=True).iterator(chunk_size=_CHUNK):
        yield id_of(calculation_id)


def _grouped(rows: Iterator[dict[str, Any]], key: str) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    for value, group in groupby(rows, key=lambda row: row[key]):
        yield value, list(group)


class _Stream:
    """Rows grouped by calculation, in the steps' order: take(calc) returns that calculation's rows."""

    def __init__(self, rows: Iterator[dict[str, Any]], key: str) -> None:
        self._groups = _grouped(rows, key)
        self._next: tuple[Any, list[dict[str, Any]]] | None = next(self._groups, None)

    def take(self, calculation_id: UUID) -> list[dict[str, Any]]:
        if self._next is None or self._next[0] != calculation_id:
            return []
        rows = self._next[1]
        self._next = next(self._groups, None)
        return rows


def workflow_run_crate(builder: CrateBuilder, workflow_run_id: UUID) -> Iterator[Entity]:
    """The crate's entities, the workflow, its steps and the root last (they list what came before)."""
    run = as_row(
        WorkflowRun.objects.filter(id=workflow_run_id)
        .values("id", "workflow", "params", "state", "error", "started_at", "finished_at", "owner__username")
        .get()
    )
    in_run = Q(calculation__workflow_run_id=workflow_run_id)
    produced_here = Q(file__produced_by__workflow_run_id=workflow_run_id)
    if builder.data == "small":
        sizes = (
            File.objects.filter(
                Q(produced_by__workflow_run_id=workflow_run_id)
                | Q(used_by__calculation__workflow_run_id=workflow_run_id)
            )
            .order_by()
            .values_list("id", "size")
        )
        builder.included = choose_small(sizes.distinct().iterator(), get_settings().crate.max_data_bytes)

    # the edges between steps, and which step outputs nothing in the run took (the run's outputs)
    edges = list(
        CalculationInput.objects.filter(in_run, produced_here)
        .order_by()
        .values(
            "calculation__step",
            "calculation__tool",
            "calculation__tool_version",
            "role",
            "file__produced_by__step",
            "file__produced_by__tool",
            "file__produced_by__tool_version",
            "file__output_role",
        )
        .distinct()
    )
    consumed_by: dict[tuple[str, str], list[str]] = {}  # a step's output -> the inputs it became
    for edge in edges:
        consumed_by.setdefault((edge["file__produced_by__step"], edge["file__output_role"]), []).append(
            input_parameter(edge["calculation__tool"], edge["calculation__tool_version"], edge["role"])
        )
    consumed = set(consumed_by)
    connections: dict[str, list[Entity]] = {}  # by receiving step
    for edge in edges:
        connections.setdefault(edge["calculation__step"], []).append(
            {
                "@type": "ParameterConnection",
                "sourceParameter": ref(
                    output_parameter(
                        edge["file__produced_by__tool"],
                        edge["file__produced_by__tool_version"],
                        edge["file__output_role"],
                    )
                ),
                "targetParameter": ref(
                    input_parameter(edge["calculation__tool"], edge["calculation__tool_version"], edge["role"])
                ),
            }
        )

    person = builder.person(run["owner__username"])
    yield person
    shapes = ToolShapes()

    # the run's own inputs (files no step of it produced), each written once with every slot it filled
    builder.gathers_files = False  # the root lists them from the database once the rest is written
    workflow_inputs: dict[str, Entity] = {}
    external = (
        CalculationInput.objects.filter(in_run, file_id__isnull=False)
        .exclude(produced_here)
        .order_by("file_id")
        .values(
            "file_id",
            "file__name",
            "file__size",
            "file__sha256",
            "calculation__step",
            "calculation__tool",
            "calculation__tool_version",
            "role",
        )
        .distinct()
    )
    for file_id, uses in _grouped(as_rows(external.iterator(chunk_size=_CHUNK)), "file_id"):
        examples: list[str] = []
        for use in uses:
            step, role = use["calculation__step"], use["role"]
            slot = _workflow_input(step, role)
            target = input_parameter(use["calculation__tool"], use["calculation__tool_version"], role)
            if slot not in workflow_inputs:
                workflow_inputs[slot] = _file_parameter(slot, f"{step}.{role}")
                connections.setdefault(step, []).append(
                    {"@type": "ParameterConnection", "sourceParameter": ref(slot), "targetParameter": ref(target)}
                )
            examples += [slot, target]
        first = uses[0]
        entity = builder.file_entity(
            file_id,
            path=input_path(file_id, first["file__name"]),
            name=first["file__name"],
            size=first["file__size"],
            sha256=first["file__sha256"],
            example_of=dict.fromkeys(examples),
        )
        yield entity

    # each step: its CreateAction, its outputs, and the ControlAction of its step
    inputs = _Stream(
        as_rows(
            CalculationInput.objects.filter(in_run)
            .order_by("calculation__step", "calculation__step_index", "calculation_id", "role")
            .values(
                "calculation_id",
                "role",
                "file_id",
                "file__name",
                "file__produced_by__workflow_run_id",
                "file__produced_by__step",
                "file__produced_by__step_index",
                "file__output_role",
            )
            .iterator(chunk_size=_CHUNK)
        ),
        "calculation_id",
    )
    outputs = _Stream(
        as_rows(
            File.objects.filter(produced_by__workflow_run_id=workflow_run_id)
            .order_by("produced_by__step", "produced_by__step_index", "produced_by_id", "output_role", "name", "id")
            .values("id", "name", "size", "sha256", "output_role", "produced_by_id")
            .iterator(chunk_size=_CHUNK)
        ),
        "produced_by_id",
    )
    step_count = 0
    workflow_outputs: dict[str, Entity] = {}
    steps = (
        Calculation.objects.filter(workflow_run_id=workflow_run_id)
        .order_by("step", "step_index", "id")
        .values(*CALCULATION_FIELDS)
        .iterator(chunk_size=_CHUNK)
    )
    for calc in steps:
        step, index, tool, tool_version = calc["step"], calc["step_index"], calc["tool"], calc["tool_version"]
        step_object_ids: list[str] = []
        deleted: list[Entity] = []
        input_rows = inputs.take(calc["id"])
        for row in input_rows:
            if row["file_id"] is None:  # deleted since: the step's provenance keeps its sha256
                missing: Entity = {
                    "@id": local_id("calculation", calc["id"], "inputs", row["role"]),
                    "@type": "File",
                    "name": f"{row['role']} (deleted from the platform)",
                    "sha256": (calc["provenance"] or {}).get("inputs", {}).get(row["role"], ""),
                }
                deleted.append(missing)
                step_object_ids.append(missing["@id"])
            elif row["file__produced_by__workflow_run_id"] == workflow_run_id:
                path = step_path(
                    row["file__produced_by__step"],
                    row["file__produced_by__step_index"],
                    row["file__output_role"],
                    row["file__name"],
                )
                step_object_ids.append(builder.file_id(row["file_id"], path))
            else:
                step_object_ids.append(builder.file_id(row["file_id"], input_path(row["file_id"], row["file__name"])))
        step_files: list[Entity] = []
        output_roles: list[str] = []
        for row in outputs.take(calc["id"]):
            output_roles.append(row["output_role"])
            examples = [output_parameter(tool, tool_version, row["output_role"])]
            examples += consumed_by.get((step, row["output_role"]), [])
            if (step, row["output_role"]) not in consumed:
                slot = _workflow_output(step, row["output_role"])
                examples.append(slot)
                if slot not in workflow_outputs:
                    workflow_outputs[slot] = _file_parameter(slot, f"{step}.{row['output_role']}")
            entity = builder.file_entity(
                row["id"],
                path=step_path(step, index, row["output_role"], row["name"]),
                name=row["name"],
                size=row["size"],
                sha256=row["sha256"],
                example_of=dict.fromkeys(examples),
            )
            step_files.append(entity)
        yield from action_entities(
            builder,
            calc,
            object_ids=step_object_ids,
            input_roles=[row["role"] for row in input_rows],
            result_ids=[entity["@id"] for entity in step_files],
            output_roles=output_roles,
            agent=person["@id"],
            shapes=shapes,
            mentioned=False,
        )
        yield from deleted
        yield from step_files
        control = local_id("control", calc["id"])
        step_count += 1
        yield {
            "@id": control,
            "@type": "ControlAction",
            "name": f"orchestrate {step}[{index or 0}]",
            "instrument": ref(local_id("step", step)),
            "object": ref(action_id(calc["id"])),
            "actionStatus": status_of(calc["state"]),
            **({"error": calc["error"] or calc["state"]} if is_failed(calc["state"]) else {}),
        }

    yield from tool_entities(builder, shapes)
    yield from workflow_inputs.values()
    yield from workflow_outputs.values()

    # the steps in the order they were first created: a step that takes another's output comes later
    first_seen = (
        Calculation.objects.filter(workflow_run_id=workflow_run_id)
        .order_by()
        .values("step", "tool", "tool_version")
        .annotate(first=Min("created_at"))
    )
    step_tools: dict[str, tuple[str, str]] = {}
    for row in sorted(as_rows(first_seen), key=lambda row: (row["first"], row["step"])):
        step_tools.setdefault(row["step"], (row["tool"], row["tool_version"]))
    for position, (step, (tool, tool_version)) in enumerate(step_tools.items()):
        links = connections.get(step, [])
        how_to: Entity = {
            "@id": local_id("step", step),
            "@type": "HowToStep",
            "name": step,
            "position": str(position),
            "workExample": ref(tool_id(tool, tool_version)),
        }
        if links:
            how_to["connection"] = refs(local_id("connection", step, number) for number in range(len(links)))
        yield how_to
        for number, link in enumerate(links):
            yield {"@id": local_id("connection", step, number), **link}
    final_links: list[Entity] = []
    for slot in workflow_outputs:
        step, _, role = workflow_outputs[slot]["name"].rpartition(".")
        if step in step_tools:
            tool, tool_version = step_tools[step]
            final_links.append(
                {
                    "@id": local_id("connection", "outputs", step, role),
                    "@type": "ParameterConnection",
                    "sourceParameter": ref(output_parameter(tool, tool_version, role)),
                    "targetParameter": ref(slot),
                }
            )
    yield from final_links

    # the workflow (the mainEntity), its run, and the engine's run of its steps
    is_pipeline = run["workflow"] == PIPELINE
    if is_pipeline:
        main_path, source = "pipeline.json", json.dumps(run["params"], indent=2, sort_keys=True).encode()
        language: Entity = {
            "@id": local_id("language", "emgapi-pipeline"),
            "@type": "ComputerLanguage",
            "name": "EMG calculations pipeline (a DAG of registered tools, as JSON)",
            "url": ref(f"{builder.public_url}/api/v2/workflows/{PIPELINE}"),
        }
    else:
        flow_file = _flow_source(run["workflow"])
        if flow_file is not None:
            main_path, source = f"workflow/{safe_name(flow_file.name)}", flow_file.read_bytes()
        else:  # its code is not on this host: what it was asked, as JSON, stands in for it
            asked = {"workflow": run["workflow"], "parameters": run["params"]}
            main_path = f"workflow/{safe_name(run['workflow'])}.json"
            source = json.dumps(asked, indent=2, sort_keys=True).encode()
        language = {
            "@id": local_id("language", "prefect-python"),
            "@type": "ComputerLanguage",
            "name": "Prefect flow (Python)",
            "url": ref("https://docs.prefect.io/"),
        }
    main_id = builder.content_entity(main_path, source)
    yield language
    params_values: list[Entity] = []
    param_slots: list[Entity] = []
    if not is_pipeline:
        for name, value in (run["params"] or {}).items():
            slot = local_id("workflow", "params", name)
            param_slots.append({"@id": slot, "@type": "FormalParameter", "name": name, "additionalType": "Text"})
            params_values.append(
                {
                    "@id": local_id("workflow-run", workflow_run_id, "params", name),
                    "@type": "PropertyValue",
                    "name": name,
                    "value": value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True),
                    "exampleOfWork": ref(slot),
                }
            )
    yield from param_slots
    yield from params_values
    yield {
        "@id": main_id,
        "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
        "name": f"{run['workflow']} workflow" if not is_pipeline else "pipeline",
        "programmingLanguage": ref(language["@id"]),
        "hasPart": refs(tool_id(tool, tool_version) for tool, tool_version in sorted(shapes.by_tool)),
        "step": refs(local_id("step", step) for step in step_tools),
        "input": refs([*workflow_inputs, *(slot["@id"] for slot in param_slots)]),
        "output": refs(workflow_outputs),
        "connection": refs(link["@id"] for link in final_links),
        "encodingFormat": "application/json" if main_path.endswith(".json") else "text/x-python",
        "version": f"sha256:{hashlib.sha256(source).hexdigest()}",  # as `task deploy-flow` versions a flow
        "url": f"{builder.public_url}/api/v2/workflows/{quote(run['workflow'], safe='')}",
    }
    run_action = local_id("workflow-run", workflow_run_id)
    action: Entity = {
        "@id": run_action,
        "@type": "CreateAction",
        "name": f"{run['workflow']} run {workflow_run_id}",
        "description": f"POST /api/v2/workflows/{run['workflow']}/runs with its parameters ({main_path}): "
        f"{step_count} steps",
        "instrument": ref(main_id),
        "agent": ref(person["@id"]),
        "object": RefStream(lambda: chain(_input_ids(builder, workflow_run_id), (v["@id"] for v in params_values))),
        "result": RefStream(lambda: _output_ids(builder, workflow_run_id, leaving_out=consumed)),
        "actionStatus": status_of(run["state"]),
        "identifier": str(workflow_run_id),
    }
    if (started := iso(run["started_at"])) is not None:
        action["startTime"] = started
    if (ended := iso(run["finished_at"])) is not None:
        action["endTime"] = ended
    if is_failed(run["state"]):
        action["error"] = run["error"] or f"the workflow run ended {run['state']}"
    builder.mentions.insert(0, run_action)
    yield action
    profiles = [PROCESS_RUN_CRATE, WORKFLOW_RUN_CRATE, WORKFLOW_RO_CRATE]
    if step_count:  # the engine's run of the steps (a run that made none has no step to describe)
        profiles.insert(2, PROVENANCE_RUN_CRATE)
        engine = f"{builder.publisher_url}#workflow-engine"
        yield {
            "@id": engine,
            "@type": "SoftwareApplication",
            "name": f"{builder.publisher} workflow engine (Prefect)",
            "softwareVersion": _engine_version(),
            "url": builder.publisher_url,
        }
        yield {
            "@id": local_id("organize", workflow_run_id),
            "@type": "OrganizeAction",
            "name": f"{builder.publisher} runs the steps of {run['workflow']} run {workflow_run_id}",
            "instrument": ref(engine),
            "agent": ref(person["@id"]),
            "object": RefStream(lambda: _step_ids(workflow_run_id, lambda step: local_id("control", step))),
            "result": ref(run_action),
            "actionStatus": status_of(run["state"]),
        }
    yield from builder.closing_entities(
        profiles=profiles,
        name=f"{run['workflow']} workflow run {workflow_run_id}",
        description=(
            f"The provenance of workflow run {workflow_run_id} of {run['workflow']}: each step's tool, version, "
            f"image, inputs, parameters and outputs, as recorded by {builder.publisher} ({run['state']})."
        ),
        author=person["@id"],
        main_entity=main_id,
        more_parts=lambda: chain(_input_ids(builder, workflow_run_id), _output_ids(builder, workflow_run_id)),
        more_mentions=lambda: _step_ids(workflow_run_id, action_id),
    )
