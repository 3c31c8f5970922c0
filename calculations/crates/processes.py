"""One calculation as the Process Run Crate profile describes a tool's execution: a `CreateAction`
whose `instrument` is the tool (a `SoftwareApplication`), whose `object` is its input files and its
parameters (`PropertyValue`s), whose `result` is its output files; its times, status, error, owner
(`agent`), container image (a `ContainerImage` with its digest) and measured usage. The tool's side
of each input, output and parameter is a `FormalParameter` the data refers to by `exampleOfWork`.

A calculation's crate is one such action; a workflow run's crate has one per step."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from uuid import UUID

from calculations.crates.graph import CrateBuilder, Entity, iso, local_id, ref, refs, status
from calculations.provenance import Provenance
from calculations.states import RunState
from calculations.tes import TES_TOOL
from calculations.tools import get_registry
from emgapiv2.config import get_settings

# the columns of a calculation an action is written from (read with .values(): no model instances)
CALCULATION_FIELDS = (
    "id",
    "tool",
    "tool_version",
    "params",
    "state",
    "error",
    "exit_code",
    "started_at",
    "finished_at",
    "provenance",
    "step",
    "step_index",
)
TES_URL = "https://github.com/ga4gh/task-execution-schemas"
DOCKER_IMAGE = "https://w3id.org/ro/terms/workflow-run#DockerImage"
_STATUS = {
    RunState.COMPLETE: "CompletedActionStatus",
    RunState.EXECUTOR_ERROR: "FailedActionStatus",
    RunState.SYSTEM_ERROR: "FailedActionStatus",
    RunState.CANCELED: "FailedActionStatus",
    RunState.QUEUED: "PotentialActionStatus",
    RunState.PAUSED: "PotentialActionStatus",
}
FAILED = status("FailedActionStatus")
_DATA_TYPES = {"integer": "Integer", "number": "Float", "boolean": "Boolean", "string": "Text"}
_UNITS = {  # a usage figure's unit, by the suffix of its name (QUDT)
    "_seconds": "https://qudt.org/vocab/unit/SEC",
    "_mb": "https://qudt.org/vocab/unit/MegaBYTE",
    "_bytes": "https://qudt.org/vocab/unit/BYTE",
}


def action_id(calculation_id: UUID) -> str:
    return local_id("calculation", calculation_id)


def tool_id(tool: str, version: str) -> str:
    """A tool version's @id: absolute, as the profile recommends; its page in this API, the version its
    fragment (a TES task's tool is the TES service itself)."""
    base = get_settings().public_url.rstrip("/")
    page = f"{base}/ga4gh/tes/v1/service-info" if tool == TES_TOOL else f"{base}/api/v2/tools/{quote(tool, safe='')}"
    return f"{page}#{quote(version, safe='')}"


def input_parameter(tool: str, version: str, role: str) -> str:
    return local_id("tool", tool, version, "inputs", role)


def output_parameter(tool: str, version: str, role: str) -> str:
    return local_id("tool", tool, version, "outputs", role)


def param_parameter(tool: str, version: str, name: str) -> str:
    return local_id("tool", tool, version, "params", name)


def status_of(state: str) -> str:
    """The action status of a run in `state` (schema.org's, by its URL, as the profiles' checks read it)."""
    return status(_STATUS.get(RunState(state), "ActiveActionStatus"))


def is_failed(state: str) -> bool:
    return status_of(state) == FAILED


def _data_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    return "Text" if isinstance(value, str) else "PropertyValue"


def _value(value: Any) -> Any:
    """A parameter's value as JSON-LD holds it: a scalar as it is, anything else as its JSON."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass
class ToolShape:
    """What a crate says about one tool version: the roles and parameters its runs used."""

    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    params: dict[str, str] = field(default_factory=dict)  # name -> additionalType


@dataclass
class ToolShapes:
    """Every tool version a crate's actions ran, gathered while they are written (a few per crate)."""

    by_tool: dict[tuple[str, str], ToolShape] = field(default_factory=dict)

    def of(self, tool: str, version: str) -> ToolShape:
        return self.by_tool.setdefault((tool, version), ToolShape())


def _image_entity(image: str, digest: str | None) -> Entity:
    """A container image as the profile names one: registry, name, tag and sha256 (its digest)."""
    name, _, digest_in_name = image.partition("@")
    first, slash, rest = name.partition("/")
    registry, path = (first, rest) if slash and ("." in first or ":" in first or first == "localhost") else ("", name)
    repository, _, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    sha256 = (digest or digest_in_name or "").removeprefix("sha256:").rsplit("@sha256:", 1)[-1]
    entity: Entity = {
        "@id": local_id("image", image, sha256 or "undigested"),
        "@type": "ContainerImage",
        "additionalType": ref(DOCKER_IMAGE),
        "name": repository,
        "registry": registry or "docker.io",
    }
    if tag:
        entity["tag"] = tag
    if sha256:
        entity["sha256"] = sha256
    return entity


def action_entities(
    builder: CrateBuilder,
    calc: dict[str, Any],
    *,
    object_ids: list[str],
    input_roles: list[str],
    result_ids: list[str],
    output_roles: list[str],
    agent: str,
    shapes: ToolShapes,
    mentioned: bool = True,
) -> Iterator[Entity]:
    """A calculation's CreateAction and what only it refers to (its parameters' values, its usage);
    its container image once per crate. The caller writes its files, by the ids it passes here."""
    tool, version = calc["tool"], calc["tool_version"]
    shape = shapes.of(tool, version)
    shape.inputs.update(input_roles)
    shape.outputs.update(output_roles)
    own = action_id(calc["id"])
    provenance = Provenance.model_validate(calc["provenance"]) if calc["provenance"] else None
    params: dict[str, Any] = calc["params"] or {}
    values: list[Entity] = []
    for name, value in params.items():
        shape.params.setdefault(name, _data_type(value))
        values.append(
            {
                "@id": f"{own}/params/{local_id(name)[1:]}",
                "@type": "PropertyValue",
                "name": name,
                "value": _value(value),
                "exampleOfWork": ref(param_parameter(tool, version, name)),
            }
        )
    action: Entity = {
        "@id": own,
        "@type": "CreateAction",
        "name": f"{tool} {version}" + (f" (step {calc['step']}[{calc['step_index'] or 0}])" if calc["step"] else ""),
        "instrument": ref(tool_id(tool, version)),
        "agent": ref(agent),
        "object": refs([*object_ids, *(value["@id"] for value in values)]),
        "actionStatus": status_of(calc["state"]),
        "identifier": str(calc["id"]),
    }
    if result_ids:
        action["result"] = refs(result_ids)
    if (started := iso(calc["started_at"])) is not None:
        action["startTime"] = started
    if (ended := iso(calc["finished_at"])) is not None:
        action["endTime"] = ended
    if is_failed(calc["state"]):
        action["error"] = calc["error"] or f"the calculation ended {calc['state']}"
    images: list[Entity] = []
    usage: list[Entity] = []
    if provenance is not None:
        attempt = provenance.attempts[-1] if provenance.attempts else None
        if tool == TES_TOOL:  # each executor's command, in order
            action["description"] = "; ".join(shlex.join(e.get("command", [])) for e in params.get("executors", []))
        elif attempt is not None and attempt.argv:
            action["description"] = shlex.join(attempt.argv)
        if provenance.image:
            images.append(_image_entity(provenance.image, provenance.image_digest))
        for key, figure in sorted((attempt.resource_usage if attempt else {}).items()):
            item: Entity = {
                "@id": f"{own}/usage/{local_id(key)[1:]}",
                "@type": "PropertyValue",
                "name": key,
                "propertyID": f"urn:emgapi:resource-usage:{key}",
                "value": figure,
            }
            if unit := next((code for suffix, code in _UNITS.items() if key.endswith(suffix)), None):
                item["unitCode"] = unit
            usage.append(item)
    if tool == TES_TOOL:  # each executor's image (the digest the platform resolved is the last attempt's)
        named = {image["name"] for image in images}
        for executor in params.get("executors", []):
            image = _image_entity(str(executor.get("image", "")), None)
            if image["name"] not in named:
                named.add(image["name"])
                images.append(image)
    if images:
        action["containerImage"] = refs(image["@id"] for image in images)
    if usage:
        action["resourceUsage"] = refs(item["@id"] for item in usage)
    if mentioned:  # (a workflow run's crate mentions the run, whose steps its engine's action lists)
        builder.mentions.append(own)
    yield action
    yield from values
    yield from usage
    yield from (image for image in images if builder.once(image["@id"]))


def tool_entities(builder: CrateBuilder, shapes: ToolShapes) -> Iterator[Entity]:
    """Each tool version the actions ran (a SoftwareApplication: name, version, url) with its
    FormalParameters: the roles and parameters its registration declares, and any its runs used."""
    registry = get_registry()
    for (tool, version), shape in sorted(shapes.by_tool.items()):
        spec = registry.get(tool)
        described: dict[str, str] = {}
        if spec is not None and spec.version == version:
            described = {role.name: role.description for role in spec.inputs}
            described |= {role.name: role.description for role in spec.outputs}
            shape.inputs.update(role.name for role in spec.inputs)
            shape.outputs.update(role.name for role in spec.outputs)
            schema = spec.params_model.model_json_schema()
            for name, prop in schema.get("properties", {}).items():
                shape.params.setdefault(name, _DATA_TYPES.get(prop.get("type", ""), "PropertyValue"))
                if "description" in prop:
                    described[f"params.{name}"] = prop["description"]
        parameters: list[Entity] = []
        outputs: list[str] = []
        for names, make in ((shape.inputs, input_parameter), (shape.outputs, output_parameter)):
            for role in sorted(names):
                parameter: Entity = {
                    "@id": make(tool, version, role),
                    "@type": "FormalParameter",
                    "name": role,
                    "additionalType": "File",
                }
                if role in described:
                    parameter["description"] = described[role]
                parameters.append(parameter)
                if make is output_parameter:
                    outputs.append(parameter["@id"])
        for name, data_type in sorted(shape.params.items()):
            parameter = {
                "@id": param_parameter(tool, version, name),
                "@type": "FormalParameter",
                "name": name,
                "additionalType": data_type,
            }
            if f"params.{name}" in described:
                parameter["description"] = described[f"params.{name}"]
            parameters.append(parameter)
        application: Entity = {
            "@id": tool_id(tool, version),
            "@type": "SoftwareApplication",
            "name": tool,
            "softwareVersion": version,
            "url": TES_URL if tool == TES_TOOL else f"{builder.public_url}/api/v2/tools/{tool}",
            "input": refs(p["@id"] for p in parameters if p["@id"] not in outputs),
            "output": refs(outputs),
        }
        if spec is not None:
            application["description"] = spec.description
        elif tool == TES_TOOL:
            application["description"] = "A GA4GH Task Execution Service task: its executors' commands in containers."
        yield application
        yield from parameters
