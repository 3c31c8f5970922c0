"""tool-<name>: every registered tool, launched from the Prefect dashboard with a form.

One flow (and deployment) per tool, whose parameters are the tool's own: its input roles (file ids)
and its pydantic parameter model, so the dashboard's "Run" form is the tool's. A run creates the
calculation as the operator account (`EMGAPI_WORKFLOW__OPERATOR_USERNAME`), through the actions like
any submission (it appears in the API and the admin), waits for it, and shows its table artifact.
"""

import asyncio
from typing import Any
from uuid import UUID

from prefect import Flow, flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, ConfigDict, Field, create_model

from calculations.actions import check_create_calculation
from calculations.actions.users import do_ensure_operator
from calculations.errors import InvalidInput, NotFound, QuotaExceeded
from calculations.models import Calculation
from calculations.states import TERMINAL_STATES
from calculations.tools import ToolSpec, get_registry
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.orchestration.artifacts import publish_calculation
from workflows.sdk import FileId


def _submit(tool: str, inputs: dict[str, Any], params: dict[str, Any], backend: str | None, use_cache: bool) -> UUID:
    operator = do_ensure_operator()
    files = {role: UUID(str(file_id)) for role, file_id in inputs.items()}
    calc = check_create_calculation(
        operator.id, tool, inputs=files, params=params, use_cache=use_cache, backend=backend
    )
    return calc.id


def _state(calculation_id: UUID) -> tuple[str, str]:
    state, error = Calculation.objects.values_list("state", "error").get(id=calculation_id)
    return str(state), str(error)


def _tool_flow(spec: ToolSpec) -> Flow[Any, Any]:
    prefix = "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_"))
    inputs_model: type[BaseModel] = create_model(
        f"{prefix}Inputs",
        __config__=ConfigDict(extra="forbid"),
        **{role.name: (FileId, Field(description=f"{role.description} A file id.")) for role in spec.inputs},  # type: ignore[call-overload]
    )

    async def launch(inputs: Any, params: Any = None, backend: str | None = None, use_cache: bool = True) -> State:
        chosen = params if params is not None else spec.params_model()
        try:
            calculation_id: UUID = await db(_submit)(
                spec.name, dict(inputs), chosen.model_dump(mode="json"), backend, use_cache
            )
        except (InvalidInput, NotFound, QuotaExceeded) as exc:
            return Failed(message=f"{spec.name} not submitted: {exc}")
        get_run_logger().info("calculation %s submitted as the operator account", calculation_id)
        while (found := await db(_state)(calculation_id))[0] not in TERMINAL_STATES:
            await asyncio.sleep(get_settings().worker.cancel_check_seconds)
        context = get_run_context()
        flow_run = getattr(context, "flow_run", None)
        if flow_run is not None:
            await publish_calculation(flow_run.id, calculation_id)
        state, error = found
        message = f"calculation {calculation_id}: {state}"
        return Completed(message=message) if state == "COMPLETE" else Failed(message=f"{message}: {error[:500]}")

    launch.__annotations__ = {
        "inputs": inputs_model, "params": spec.params_model | None, "backend": str | None, "use_cache": bool,
        "return": State,
    }  # fmt: skip
    launch.__name__ = launch.__qualname__ = f"tool_{spec.name.replace('-', '_')}"
    launch.__module__ = __name__
    return flow(name=f"tool-{spec.name}", description=f"Run {spec.name}: {spec.description}", persist_result=False)(
        launch
    )


TOOL_FLOWS: dict[str, Flow[Any, Any]] = {spec.name: _tool_flow(spec) for spec in get_registry().values()}
globals().update({flow_.fn.__name__: flow_ for flow_ in TOOL_FLOWS.values()})  # entrypoints: tools.tool_<name>
