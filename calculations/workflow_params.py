"""Checking a workflow run's parameters before anything runs: against the JSON schema Prefect derived
from the flow's signature (a 422 naming the field), every file a parameter names must be the
submitter's (a 404, as everywhere), and a `pipeline`'s DAG must hold together (a 422 naming the step
and field: `calculations/pipelines.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

from calculations.errors import InvalidInput, NotFound
from calculations.launching import WorkflowInfo, get_launcher
from calculations.models import File
from calculations.pipelines import check_pipeline
from emgapiv2.config import get_settings

# The JSON-schema mark of a parameter that holds a file id (`workflows.sdk.FileId` sets it).
FILE_MARK = "x-emgapi-file"
PIPELINE = "pipeline"


def find_workflow(name: str) -> WorkflowInfo:
    for info in get_launcher().workflows():
        if info.name == name:
            return info
    raise NotFound(f"workflow {name!r} not found (GET /api/v2/workflows lists the deployed ones)")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        path = schema["$ref"].removeprefix("#/").split("/")
        target: Any = root
        for part in path:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
    return schema if isinstance(schema, dict) else {}


def marked_files(schema: dict[str, Any], value: Any, root: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(field path, value) of each value the schema marks as a file id."""
    schema = _resolve(schema, root)
    if schema.get(FILE_MARK):
        yield where, value
        return
    for option in schema.get("anyOf", []) + schema.get("allOf", []) + schema.get("oneOf", []):
        yield from marked_files(option, value, root, where)
    if isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}):
                yield from marked_files(schema["properties"][key], item, root, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from marked_files(schema["additionalProperties"], item, root, f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from marked_files(schema["items"], item, root, f"{where}[{i}]")


def _schema_errors(schema: dict[str, Any], params: dict[str, Any]) -> list[str]:
    try:
        validator = Draft7Validator(schema)
        errors = sorted(validator.iter_errors(params), key=lambda error: list(map(str, error.absolute_path)))
    except SchemaError:  # a flow whose schema is broken: nothing to check against but its own run
        return []
    limit = get_settings().max_validation_errors
    described = []
    for error in errors[:limit]:
        location = ".".join(["params", *map(str, error.absolute_path)])
        described.append(f"{location}: {error.message[:300]}")
    if len(errors) > limit:
        described.append(f"and {len(errors) - limit} more errors")
    return described


def check_workflow_params(owner_id: int, workflow: WorkflowInfo, params: dict[str, Any]) -> None:
    schema = workflow.parameters_schema or {}
    if errors := _schema_errors(schema, params):
        raise InvalidInput("; ".join(errors))
    named = list(marked_files(schema, params, schema, "params"))
    ids: dict[UUID, str] = {}
    for where, value in named:
        try:
            ids[UUID(str(value))] = where
        except ValueError:
            raise InvalidInput(f"{where}: {str(value)[:100]!r} is not a file id") from None
    owned = set(File.objects.filter(owner_id=owner_id, id__in=list(ids)).values_list("id", flat=True))
    for file_id, where in ids.items():
        if file_id not in owned:
            raise NotFound(f"{where}: file {file_id} not found")
    if workflow.name == PIPELINE:
        check_pipeline(owner_id, {"steps": params.get("steps")})
