"""tool-<name>: every registered tool, launched from the Prefect dashboard with a form.

One flow (and deployment) per tool, whose parameters are the tool's own: its input roles (file ids)
and its pydantic parameter model, so the dashboard's "Run" form is the tool's. A run creates the
calculation as the operator account (`EMGAPI_WORKFLOW__OPERATOR_USERNAME`), through the actions like
any submission (it appears in the API and the admin), waits for it, and shows its table artifact.
With `dashboard.any_users_files` it may name any user's files instead (`calculations/actions/dashboard.py`).
"""

import asyncio
from typing import Annotated, Any
from uuid import UUID

from prefect import Flow, flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from calculations.actions.dashboard import SETTING, check_launch_calculation, one_line
from calculations.errors import Forbidden, InvalidInput, NotFound, QuotaExceeded
from calculations.models import Calculation
from calculations.states import TERMINAL_STATES
from calculations.tools import ToolSpec, get_registry
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.orchestration.artifacts import publish_calculation
from workflows.sdk import FileId

LAUNCH_ERRORS = (InvalidInput, NotFound, Forbidden, QuotaExceeded)


def whose_files() -> str:
    """Whose files a dashboard launch may name, as its form says."""
    operator = get_settings().workflow.operator_username
    if get_settings().dashboard.any_users_files:
        return (
            f"Any user's file, if the operator account {operator!r} is staff (else only its own): the "
            "calculation then belongs to the files' owner, one owner for all of them."
        )
    return (
        f"One of the operator account's ({operator!r}) files: the calculation runs as that account "
        f"({SETTING}=true lets a staff operator account name any user's files)."
    )


def _submit(tool: str, inputs: Any, params: Any, backend: Any, use_cache: Any) -> tuple[UUID, str]:
    calc = check_launch_calculation(tool, inputs, params, backend, use_cache)
    return calc.id, calc.owner.username


def _state(calculation_id: UUID) -> tuple[str, str]:
    state, error = Calculation.objects.values_list("state", "error").get(id=calculation_id)
    return str(state), str(error)


def _backend_type(spec: ToolSpec) -> Any:
    """The form's backend field: a choice of the tool's backends this deployment enables (an enum even
    of one: the dashboard shows a choice)."""
    available = spec.available_backends()
    if not available:
        return str | None
    return Annotated[str, WithJsonSchema({"type": "string", "enum": available})] | None


def _tool_flow(spec: ToolSpec) -> Flow[Any, Any]:
    prefix = "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_"))
    whose = whose_files()
    owner = get_settings().workflow.operator_username
    role_note = "Any user's (see inputs)." if get_settings().dashboard.any_users_files else f"Of the account {owner!r}."
    inputs_model: type[BaseModel] = create_model(
        f"{prefix}Inputs",
        __config__=ConfigDict(extra="forbid"),
        **{
            role.name: (FileId, Field(description=f"{role.description} A file id. {role_note}")) for role in spec.inputs
        },  # type: ignore[call-overload]
    )

    async def launch(inputs: Any, params: Any = None, backend: Any = None, use_cache: Any = True) -> State:
        try:
            calculation_id, owner = await db(_submit)(spec.name, inputs, params, backend, use_cache)
        except LAUNCH_ERRORS as exc:
            message = one_line(f"{spec.name} not submitted: {exc}")
            get_run_logger().warning("%s", message)
            return Failed(message=message)
        get_run_logger().info("calculation %s submitted, owned by %s", calculation_id, owner)
        while (found := await db(_state)(calculation_id))[0] not in TERMINAL_STATES:
            await asyncio.sleep(get_settings().worker.cancel_check_seconds)
        context = get_run_context()
        flow_run = getattr(context, "flow_run", None)
        if flow_run is not None:
            await publish_calculation(flow_run.id, calculation_id)
        state, error = found
        message = f"calculation {calculation_id}: {state}"
        return Completed(message=message) if state == "COMPLETE" else Failed(message=one_line(f"{message}: {error}"))

    # The form Prefect shows is this signature's schema, its fields described by the docstring's Args.
    # Prefect does not validate the values itself (validate_parameters=False): the submission does,
    # and a refusal fails the run with one line, not a traceback.
    launch.__annotations__ = {
        "inputs": inputs_model, "params": spec.params_model | None, "backend": _backend_type(spec),
        "use_cache": bool, "return": State,
    }  # fmt: skip
    launch.__doc__ = f"""Run {spec.name}.

    Args:
        inputs: The tool's input files, by role. {whose}
        params: The tool's parameters (empty: its defaults).
        backend: One of its backends this deployment enables (empty: the deployment's default, else the tool's).
        use_cache: Reuse an identical earlier calculation's outputs.
    """
    launch.__name__ = launch.__qualname__ = f"tool_{spec.name.replace('-', '_')}"
    launch.__module__ = __name__
    return flow(
        name=f"tool-{spec.name}",
        description=f"Run {spec.name}: {spec.description} {whose}",
        persist_result=False,
        validate_parameters=False,
    )(launch)


TOOL_FLOWS: dict[str, Flow[Any, Any]] = {spec.name: _tool_flow(spec) for spec in get_registry().values()}
globals().update({flow_.fn.__name__: flow_ for flow_ in TOOL_FLOWS.values()})  # entrypoints: tools.tool_<name>
