"""Runs an operator launches from the Prefect dashboard's forms: a tool's (its `tool-<name>`
deployment) and a workflow's. Prefect's dashboard knows no platform user, so such a run belongs to
the operator account (`workflow.operator_username`), and the files it names must be that account's.
With `dashboard.any_users_files`, and only if the operator account is staff, it may name any user's
files instead: the run then belongs to their owner (one owner for all of them), and its first event
names the operator account.

Every refusal is a domain error whose message is one line: the flow run fails with it, and the
dashboard's list of flow runs shows it as the run's state message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model

from calculations.actions.submissions import check_create_calculation
from calculations.actions.transitions import user_actor
from calculations.actions.users import do_ensure_operator
from calculations.actions.workflow_runs import do_adopt_flow_run
from calculations.errors import Forbidden, InvalidInput, NotFound
from calculations.models import Calculation, File, WorkflowRun
from calculations.orchestrator import WorkflowInfo
from calculations.pipelines import file_refs, plan
from calculations.workflow_params import PIPELINE, check_plain_json, check_workflow_params, marked_files
from emgapiv2.config import get_settings

LAUNCHED = "launched from the Prefect dashboard"
SETTING = "EMGAPI_DASHBOARD__ANY_USERS_FILES"


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one line of at most `limit` characters: a flow run's state message, as the dashboard lists it."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def dashboard_owner(files: Mapping[UUID, str]) -> Any:
    """The account a dashboard launch naming `files` (id: where it is named) runs as: the operator
    account, or (with `dashboard.any_users_files` and a staff operator account) the files' one owner.
    NotFound, Forbidden or InvalidInput, each saying why and what to do, otherwise."""
    operator = do_ensure_operator()
    owners = dict(File.objects.filter(id__in=list(files)).values_list("id", "owner_id"))
    foreign = {file_id: where for file_id, where in files.items() if owners.get(file_id) != operator.id}
    if not foreign:
        return operator
    if not get_settings().dashboard.any_users_files:
        file_id, where = next(iter(foreign.items()))
        raise NotFound(
            f"{where}: file {file_id} is not one of the operator account's ({operator.username!r}) files; a "
            f"dashboard launch runs as that account (upload the file as {operator.username!r}, or set {SETTING}=true "
            "and make the account staff to name any user's files)"
        )
    if missing := [(file_id, where) for file_id, where in files.items() if file_id not in owners]:
        raise NotFound(f"{missing[0][1]}: file {missing[0][0]} not found")
    if not operator.is_staff:
        raise Forbidden(
            f"{next(iter(foreign.values()))}: another user's file; only a staff operator account may name those, "
            f"and {operator.username!r} is not staff (tick 'Staff status' on it in the Django admin)"
        )
    owner_ids = set(owners.values())
    if len(owner_ids) > 1:
        names = sorted(get_user_model().objects.filter(id__in=owner_ids).values_list("username", flat=True))
        raise InvalidInput(f"the files belong to {len(names)} users ({', '.join(names)}); name files of one owner")
    return get_user_model().objects.get(id=owner_ids.pop())


def check_launch_calculation(tool: str, inputs: Any, params: Any, backend: Any, use_cache: Any) -> Calculation:
    """A tool's run from its dashboard form (the form's values as Prefect passes them, unchecked),
    created for its owner (`dashboard_owner`) like any submission."""
    if not isinstance(inputs, dict):
        raise InvalidInput("inputs: an object of input role to file id")
    files: dict[str, UUID] = {}
    for role, value in inputs.items():
        try:
            files[str(role)] = UUID(str(value))
        except ValueError:
            raise InvalidInput(f"inputs.{role}: {str(value)[:100]!r} is not a file id") from None
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("params: an object of the tool's parameters")
    if backend is not None and not isinstance(backend, str):
        raise InvalidInput("backend: the name of one of the tool's backends")
    if not isinstance(use_cache, bool):
        raise InvalidInput("use_cache: true or false")
    owner = dashboard_owner({file_id: f"inputs.{role}" for role, file_id in files.items()})
    operator_id = do_ensure_operator().id
    return check_create_calculation(
        owner.id,
        tool,
        inputs=files,
        params=params or {},
        use_cache=use_cache,
        backend=backend,
        actor=user_actor(operator_id) if owner.id != operator_id else None,
        reason=LAUNCHED,
    )


def workflow_files(workflow: WorkflowInfo, params: dict[str, Any]) -> dict[UUID, str]:
    """The files a workflow's parameters name (id: where), as the API's check finds them."""
    if workflow.name == PIPELINE:
        return {file_id: where for where, file_id in file_refs(plan({"steps": params.get("steps")}))}
    schema = workflow.parameters_schema or {}
    files: dict[UUID, str] = {}
    for where, value in marked_files(schema, params, schema, "params"):
        try:
            files[UUID(str(value))] = where
        except ValueError:
            raise InvalidInput(f"{where}: {str(value)[:100]!r} is not a file id") from None
    return files


def check_adopt_flow_run(workflow: WorkflowInfo, params: dict[str, Any], flow_run_id: UUID) -> WorkflowRun:
    """A workflow's flow run started from the dashboard's Run form, checked as the API checks a launch
    (its parameters against the schema, its files its owner's), then adopted as a workflow run of
    `dashboard_owner`. A flow run already adopted (a worker that restarted) is taken as it is."""
    existing = WorkflowRun.objects.filter(flow_run_id=flow_run_id).first()
    if existing is not None:
        return existing
    check_plain_json(params, "params")
    owner = dashboard_owner(workflow_files(workflow, params))
    check_workflow_params(owner.id, workflow, params)
    operator = do_ensure_operator()
    return do_adopt_flow_run(owner.username, workflow.name, params, flow_run_id, launched_by=operator.username)
