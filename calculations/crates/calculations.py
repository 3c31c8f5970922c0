"""A calculation (a tool's run, or a GA4GH TES task) as a Process Run Crate 0.5: one CreateAction,
its inputs under inputs/<role>/<name> and its outputs under outputs/<role>/<name>."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from calculations.crates.graph import (
    PROCESS_RUN_CRATE,
    CrateBuilder,
    Entity,
    as_row,
    as_rows,
    choose_small,
    local_id,
    ref,
    safe_name,
)
from calculations.crates.processes import (
    CALCULATION_FIELDS,
    ToolShapes,
    action_entities,
    input_parameter,
    output_parameter,
    tool_entities,
)
from calculations.models import Calculation, CalculationInput, File
from calculations.provenance import Provenance
from calculations.tes import TES_TOOL
from emgapiv2.config import get_settings


def calculation_crate(builder: CrateBuilder, calculation_id: UUID) -> Iterator[Entity]:
    """The crate's entities, the root last (it lists the parts the others added)."""
    calc = as_row(
        Calculation.objects.filter(id=calculation_id)
        .values(*CALCULATION_FIELDS, "owner__username", "tes__name", "tes__description")
        .get()
    )
    inputs = list(
        as_rows(
            CalculationInput.objects.filter(calculation_id=calculation_id)
            .order_by("role")
            .values("role", "file_id", "file__name", "file__size", "file__sha256")
        )
    )
    outputs = list(
        as_rows(
            File.objects.filter(produced_by_id=calculation_id)
            .order_by("output_role", "name", "id")
            .values("id", "name", "size", "sha256", "output_role")
        )
    )
    if builder.data == "small":
        sizes = [(row["file_id"], row["file__size"]) for row in inputs if row["file_id"] is not None]
        sizes += [(row["id"], row["size"]) for row in outputs]
        builder.included = choose_small(sizes, get_settings().crate.max_data_bytes)
    tool, version = calc["tool"], calc["tool_version"]
    recorded = Provenance.model_validate(calc["provenance"]).inputs if calc["provenance"] else {}
    files: list[Entity] = []
    object_ids: list[str] = []
    for row in inputs:
        example = input_parameter(tool, version, row["role"])
        if row["file_id"] is None:  # deleted since: its sha256 stays in the provenance
            entity: Entity = {
                "@id": local_id("calculation", calculation_id, "inputs", row["role"]),
                "@type": "File",
                "name": f"{row['role']} (deleted from the platform)",
                "exampleOfWork": ref(example),
            }
            if row["role"] in recorded:
                entity["sha256"] = recorded[row["role"]]
        else:
            entity = builder.file_entity(
                row["file_id"],
                path=f"inputs/{safe_name(row['role'])}/{safe_name(row['file__name'])}",
                name=row["file__name"],
                size=row["file__size"],
                sha256=row["file__sha256"],
                example_of=[example],
            )
        files.append(entity)
        object_ids.append(entity["@id"])
    result_ids: list[str] = []
    taken: set[str] = set()
    for row in outputs:
        path = f"outputs/{safe_name(row['output_role'])}/{safe_name(row['name'])}"
        if path in taken:  # a TES output role may hold many files: the same name twice gets its id's folder
            path = f"outputs/{safe_name(row['output_role'])}/{row['id']}/{safe_name(row['name'])}"
        taken.add(path)
        entity = builder.file_entity(
            row["id"],
            path=path,
            name=row["name"],
            size=row["size"],
            sha256=row["sha256"],
            example_of=[output_parameter(tool, version, row["output_role"])],
        )
        files.append(entity)
        result_ids.append(entity["@id"])
    person = builder.person(calc["owner__username"])
    shapes = ToolShapes()
    yield from action_entities(
        builder,
        calc,
        object_ids=object_ids,
        input_roles=[row["role"] for row in inputs],
        result_ids=result_ids,
        output_roles=[row["output_role"] for row in outputs],
        agent=person["@id"],
        shapes=shapes,
    )
    yield from files
    yield person
    yield from tool_entities(builder, shapes)
    if tool == TES_TOOL:
        name = f"TES task {calc['tes__name'] or calculation_id}"
        description = calc["tes__description"] or f"GA4GH TES task {calculation_id} and its provenance."
    else:
        name = f"{tool} {version}: calculation {calculation_id}"
        description = (
            f"The provenance of calculation {calculation_id}: {tool} {version} on its inputs, with its parameters, "
            f"outputs, container image and measured usage, as recorded by {builder.publisher} ({calc['state']})."
        )
    yield from builder.closing_entities(
        profiles=[PROCESS_RUN_CRATE], name=name, description=description, author=person["@id"]
    )
