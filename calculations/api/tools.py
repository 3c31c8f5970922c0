"""Tool listing and submission. One typed submission endpoint per registered tool is generated
from the registry (its OpenAPI schema names the tool's input roles and parameters), plus a generic
`{name}` route that answers unknown tools with a clear 404."""

from typing import Any, Literal
from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import BaseModel, ConfigDict, Field, create_model

from calculations.actions import check_create_calculation
from calculations.api.requests import AuthedRequest
from calculations.errors import NotFound
from calculations.models import Calculation
from calculations.resources import ResourcesIn, RetryIn, default_grant, most_asked
from calculations.schemas import (
    CalculationIn,
    CalculationOut,
    ErrorOut,
    InputRoleOut,
    NotifyIn,
    OutputRoleOut,
    RecommendationOut,
    ResourcesOut,
    ToolOut,
    ToolSummaryOut,
    UsageBandOut,
    UsageOut,
)
from calculations.states import RunState
from calculations.tools import ToolParams, ToolSpec, UnknownTool, get_registry, get_tool
from calculations.usage import default_memory_mb, tool_usage
from emgapiv2.config import get_settings

router = Router(tags=["tools"])
SUBMIT_RESPONSES: dict[int, Any] = {
    200: CalculationOut,
    202: CalculationOut,
    404: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
}


def _tool_out(spec: ToolSpec) -> ToolOut:
    return ToolOut(
        name=spec.name,
        version=spec.version,
        description=spec.description,
        params_schema=spec.params_model.model_json_schema(),
        inputs=[InputRoleOut(name=r.name, description=r.description, formats=list(r.formats)) for r in spec.inputs],
        outputs=[
            OutputRoleOut(
                name=r.name,
                description=r.description,
                path=r.path,
                format=r.format,
                required=r.required,
                carries_timestamps=r.carries_timestamps,
            )
            for r in spec.outputs
        ],
        resources=ResourcesOut(**default_grant(spec.resources), **most_asked(spec.resources)),
        usage=_usage_out(spec),
        backends=spec.available_backends(),
        default_backend=_default_backend(spec),
        image=spec.image.name if spec.image else None,
        nondeterministic=spec.nondeterministic,
    )


def _usage_out(spec: ToolSpec) -> UsageOut:
    settings = get_settings().resources
    usage = tool_usage(spec.name)
    bands = [
        UsageBandOut(
            **{name: value for name, value in vars(band).items() if name != "recommendation"},
            recommendation=RecommendationOut(**vars(rec), default_memory_mb=default_memory_mb(spec, rec)),
        )
        for band in usage.bands
        if (rec := band.recommendation) is not None  # fewer runs: one user's figures, shown to another
    ]
    defaults_on: list[str] = []
    if settings.recommend_defaults:
        defaults_on = [backend for backend in settings.recommend_backends if backend in spec.available_backends()]
    return UsageOut(window=usage.window, min_runs=usage.min_runs, defaults_on=defaults_on, bands=bands)


def _default_backend(spec: ToolSpec) -> str | None:
    try:
        return spec.choose_backend(None)
    except ValueError:
        return None


@router.get("", response=list[ToolSummaryOut], operation_id="list_tools")
def list_tools(request: HttpRequest) -> list[ToolSummaryOut]:
    return [
        ToolSummaryOut(name=s.name, version=s.version, description=s.description)
        for s in sorted(get_registry().values(), key=lambda s: s.name)
    ]


@router.get("/{name}", response={200: ToolOut, 404: ErrorOut}, operation_id="get_tool")
def get_tool_detail(request: HttpRequest, name: str) -> ToolOut:
    try:
        return _tool_out(get_tool(name))
    except UnknownTool as exc:
        raise NotFound(str(exc)) from None


def _submitted(calc: Calculation) -> tuple[int, Calculation]:
    # 200: answered at once from the cache; 202: queued (possibly following an identical run)
    return (200 if calc.state == RunState.COMPLETE else 202), calc


class _Submission(Schema):
    # What every tool's submission body has; each tool's schema (below) narrows the field types.
    # A misspelled key ("param", "usecache") is a 422 that names it, never silently a default.
    model_config = ConfigDict(extra="forbid")

    inputs: BaseModel
    params: ToolParams
    use_cache: bool
    backend: str | None
    notify: NotifyIn | None = Field(None, description="Tell this URL when the calculation reaches these states.")
    resources: ResourcesIn | None = Field(None, description="CPUs, memory, time and GPUs to give the tool.")
    retry: RetryIn | None = Field(None, description="Whether to retry with more memory or time, and up to what.")


def _submission_schema(spec: ToolSpec) -> type[_Submission]:
    prefix = "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_"))
    input_fields: dict[str, Any] = {
        role.name: (UUID, Field(description=f"{role.description} File id.")) for role in spec.inputs
    }
    inputs_model = create_model(f"{prefix}Inputs", __config__=ConfigDict(extra="forbid"), **input_fields)
    # a Literal of values known only at run time: a type for pydantic, a value for the type checker
    backend_choice: Any = Literal[spec.backends]
    return create_model(
        f"{prefix}CalculationIn",
        __base__=_Submission,
        inputs=(inputs_model, Field(description="File id for each input role.")),
        params=(spec.params_model, Field(default_factory=spec.params_model, description=spec.description)),
        use_cache=(bool, Field(True, description="Answer from an identical earlier calculation if there is one.")),
        backend=(
            backend_choice | None,
            Field(None, description="Where to run it (GET /tools/{name} lists what this deployment offers)."),
        ),
    )


def _add_submission_route(spec: ToolSpec) -> None:
    schema = _submission_schema(spec)

    def submit(request: AuthedRequest, payload: _Submission) -> tuple[int, Calculation]:
        return _submitted(
            check_create_calculation(
                request.auth.id,
                spec.name,
                inputs=payload.inputs.model_dump(),
                params=payload.params.model_dump(mode="json"),
                use_cache=payload.use_cache,
                backend=payload.backend,
                notify=payload.notify.model_dump() if payload.notify else None,
                resources=payload.resources.model_dump() if payload.resources else None,
                retry=payload.retry.model_dump() if payload.retry else None,
            )
        )

    # ninja takes a Schema parameter for the JSON body and reads its model from the annotation:
    # this tool's own schema (the base above only tells the type checker what the body holds)
    submit.__annotations__["payload"] = schema
    submit.__name__ = f"submit_{spec.name.replace('-', '_')}"
    router.post(
        f"/{spec.name}/calculations",
        response=SUBMIT_RESPONSES,
        operation_id=f"submit_{spec.name.replace('-', '_')}",
        summary=f"Run {spec.name}",
        description=spec.description,
    )(submit)


for _spec in sorted(get_registry().values(), key=lambda s: s.name):
    _add_submission_route(_spec)


@router.post("/{name}/calculations", response=SUBMIT_RESPONSES, operation_id="submit_calculation")
def submit_calculation(request: AuthedRequest, name: str, payload: CalculationIn) -> tuple[int, Calculation]:
    """Submit to a tool by name (the typed per-tool routes above document each tool's body)."""
    return _submitted(
        check_create_calculation(
            request.auth.id,
            name,
            inputs=payload.inputs,
            params=payload.params,
            use_cache=payload.use_cache,
            backend=payload.backend,
            notify=payload.notify.model_dump() if payload.notify else None,
            resources=payload.resources.model_dump() if payload.resources else None,
            retry=payload.retry.model_dump() if payload.retry else None,
        )
    )
