"""Checking what a user gives a workflow before anything runs: a run's parameters, and the input a
paused run waits for. Both are checked against their JSON schema (the one Prefect derived from the
flow's signature, the one it stored for the pause), with keys the schema does not name refused (a
422 naming the field); every file they name must be the submitter's (a 404, as everywhere); and a
`pipeline`'s DAG must hold together (a 422 naming the step and field: `calculations/pipelines.py`).

Both go to Prefect as they are, and its server fills in any object with a `__prefect_kind` key (a
workspace variable, a template) before the flow sees it: such keys are refused anywhere, as are
values nested or large enough to break its client (`workflow.max_params_depth`, `max_params_bytes`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError, ValidationError

from calculations.errors import InvalidInput, NotFound
from calculations.models import File
from calculations.orchestrator import WorkflowInfo, get_orchestrator
from calculations.pipelines import check_pipeline
from emgapiv2.config import get_settings

# The JSON-schema mark of a parameter that holds a file id (`workflows.sdk.FileId` sets it).
FILE_MARK = "x-emgapi-file"
PIPELINE = "pipeline"
# Prefect's placeholders (`__prefect_kind`): its server would replace them with its own data
PREFECT_KEY_PREFIX = "__prefect"
# keywords whose value is one schema, or a list or a map of them (where `_closed` looks for objects)
_SUBSCHEMA = ("items", "additionalItems", "additionalProperties", "not", "contains", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")


def find_workflow(name: str) -> WorkflowInfo:
    for info in get_orchestrator().workflows():
        if info.name == name:
            return info
    raise NotFound(
        f"workflow {name!r} not found: it is not deployed, or its code cannot be loaded "
        "(GET /api/v2/workflows lists the ones you may launch)"
    )


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


def check_plain_json(value: Any, where: str) -> None:
    """`value` is data Prefect passes on as it is: no key of Prefect's placeholders at any depth,
    nested at most `workflow.max_params_depth` deep, at most `workflow.max_params_bytes` as JSON."""
    settings = get_settings().workflow
    # iteratively, so that a value nested deeper than Python's recursion limit is refused, not a crash
    pending: list[tuple[Any, str, int]] = [(value, where, 1)]
    while pending:
        item, path, depth = pending.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > settings.max_params_depth:
            raise InvalidInput(f"{path[:300]}: nested more than {settings.max_params_depth} levels deep")
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            if isinstance(key, str) and key.startswith(PREFECT_KEY_PREFIX):
                raise InvalidInput(
                    f"{path[:300]}.{key[:100]}: a key starting {PREFECT_KEY_PREFIX!r} is one of Prefect's "
                    "placeholders, which its server would fill in: give the value itself"
                )
            pending.append((child, f"{path}.{key}" if isinstance(item, dict) else f"{path}[{key}]", depth + 1))
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > settings.max_params_bytes:
        raise InvalidInput(
            f"{where}: {size} bytes as JSON; at most {settings.max_params_bytes}. "
            "Upload large data as a file (POST /api/v2/files) and pass its id"
        )


def _closed(schema: Any) -> Any:
    """A copy of `schema` in which an object that lists its properties takes no others unless it says
    so: an unknown key is a mistake the user hears about, not a value the flow silently drops."""
    if not isinstance(schema, dict):
        return schema
    closed = dict(schema)
    for keyword in _SUBSCHEMA:
        if keyword in closed:
            closed[keyword] = _closed(closed[keyword])
    for keyword in _SUBSCHEMA_LISTS:
        if isinstance(closed.get(keyword), list):
            closed[keyword] = [_closed(option) for option in closed[keyword]]
    for keyword in _SUBSCHEMA_MAPS:
        if isinstance(closed.get(keyword), dict):
            closed[keyword] = {name: _closed(sub) for name, sub in closed[keyword].items()}
    if isinstance(closed.get("properties"), dict) and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


_SIZE_LIMITS = {"maxItems": "at most {} items", "minItems": "at least {} items", "maxLength": "at most {} characters",
                "minLength": "at least {} characters", "maxProperties": "at most {} keys"}  # fmt: skip


def _message(error: ValidationError) -> str:
    """jsonschema's message, unless it would quote a long value (its list, its text) before saying what
    is wrong with it: then what the schema asks."""
    if error.validator in _SIZE_LIMITS and isinstance(error.instance, list | str | dict):
        wanted = _SIZE_LIMITS[str(error.validator)].format(error.validator_value)
        return f"has {len(error.instance)}; {wanted}"
    if len(error.message) <= 300:
        return str(error.message)
    return f"does not fit the schema's {error.validator!r} ({str(error.validator_value)[:100]})"


def _schema_errors(schema: dict[str, Any], value: dict[str, Any], where: str) -> list[str]:
    try:
        validator = Draft7Validator(_closed(schema))
        errors = sorted(validator.iter_errors(value), key=lambda error: list(map(str, error.absolute_path)))
    except SchemaError:  # a flow whose schema is broken: nothing to check against but its own run
        return []
    limit = get_settings().max_validation_errors
    described = []
    for error in errors[:limit]:
        location = ".".join([where, *map(str, error.absolute_path)])
        described.append(f"{location}: {_message(error)}")
    if len(errors) > limit:
        described.append(f"and {len(errors) - limit} more errors")
    return described


def _check_against(owner_id: int, schema: dict[str, Any], value: dict[str, Any], where: str) -> None:
    """`value` (named `where` in messages) is plain data, fits `schema`, and names only the owner's files."""
    check_plain_json(value, where)
    if errors := _schema_errors(schema, value, where):
        raise InvalidInput("; ".join(errors))
    ids: dict[UUID, str] = {}
    for path, item in marked_files(schema, value, schema, where):
        try:
            ids[UUID(str(item))] = path
        except ValueError:
            raise InvalidInput(f"{path}: {str(item)[:100]!r} is not a file id") from None
    owned = set(File.objects.filter(owner_id=owner_id, id__in=list(ids)).values_list("id", flat=True))
    for file_id, path in ids.items():
        if file_id not in owned:
            raise NotFound(f"{path}: file {file_id} not found")


def check_workflow_params(owner_id: int, workflow: WorkflowInfo, params: dict[str, Any]) -> None:
    """Parameters a workflow may be launched with. The built-in pipeline's are planned, once: its plan
    checks all its schema would (the schema is derived from the same models) and more."""
    if workflow.name != PIPELINE:
        _check_against(owner_id, workflow.parameters_schema or {}, params, "params")
        return
    check_plain_json(params, "params")
    if unknown := sorted(set(params) - {"steps"}):
        raise InvalidInput(f"params: unknown parameter(s) {', '.join(map(repr, unknown))}; the pipeline takes 'steps'")
    check_pipeline(owner_id, {"steps": params.get("steps")})


def check_resume_input(owner_id: int, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
    """The input a paused run is given fits the form it paused with (the schema Prefect stored for
    the pause), and names only the owner's files."""
    _check_against(owner_id, get_orchestrator().paused_input_schema(flow_run_id), run_input, "input")
