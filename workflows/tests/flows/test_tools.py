"""The "run a tool" flow's dashboard form (the parameter schema Prefect stores with each tool-<name>
deployment and renders as its Run form), and a launch the platform refuses: the flow run fails with
one line saying why, as the dashboard's list of runs shows it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.db import connections
from prefect.states import State
from prefect.utilities.callables import parameter_schema

from calculations.tools import get_tool
from emgapiv2.config import get_settings
from workflows.db import db
from workflows.flows import tools


def _form(flow: Any) -> dict[str, Any]:
    return parameter_schema(flow.fn).model_dump(exclude_unset=True)


def test_the_form_says_whose_files_it_takes() -> None:
    form = _form(tools.TOOL_FLOWS["obabel"])
    inputs = form["properties"]["inputs"]["description"]
    assert "One of the operator account's ('operator') files" in inputs
    assert "EMGAPI_DASHBOARD__ANY_USERS_FILES=true" in inputs
    role = form["definitions"]["ObabelInputs"]["properties"]["molecules"]["description"]
    assert role.endswith("A file id. Of the account 'operator'.")
    assert "operator account" in (tools.TOOL_FLOWS["obabel"].description or "")


def test_with_any_users_files_the_form_says_the_calculation_is_the_files_owners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(get_settings().dashboard, "any_users_files", True)
    form = _form(tools._tool_flow(get_tool("obabel")))
    assert "Any user's file, if the operator account 'operator' is staff" in form["properties"]["inputs"]["description"]
    assert "belongs to the files' owner" in form["properties"]["inputs"]["description"]


def test_backend_is_a_choice_of_the_tools_enabled_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_tool("obabel").backends == ("local", "container", "slurm")
    monkeypatch.setattr(get_settings().execution, "enabled", ["slurm", "local"])
    backend = _form(tools._tool_flow(get_tool("obabel")))["properties"]["backend"]
    assert backend["anyOf"] == [{"type": "string", "enum": ["local", "slurm"]}, {"type": "null"}]
    monkeypatch.setattr(get_settings().execution, "enabled", ["local"])
    backend = _form(tools._tool_flow(get_tool("obabel")))["properties"]["backend"]
    assert backend["anyOf"][0] == {"type": "string", "enum": ["local"]}  # a choice even of one


@pytest.mark.django_db(transaction=True)
def test_a_refused_launch_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, uploaded: Any, caplog: pytest.LogCaptureFixture
) -> None:
    molecules = uploaded("m.smi", b"CCO ethanol\n")  # alice's, not the operator account's
    monkeypatch.setattr(tools, "get_run_logger", lambda: logging.getLogger("test-flow-run"))
    try:
        state: State = asyncio.run(tools.TOOL_FLOWS["obabel"].fn(inputs={"molecules": molecules}, backend="local"))
    finally:
        asyncio.run(db(connections.close_all)())  # the worker thread's connection, before the database goes
    assert state.is_failed()
    assert state.message is not None and "\n" not in state.message and len(state.message) <= 500
    assert state.message.startswith(f"obabel not submitted: inputs.molecules: file {molecules} is not one of the")
    assert state.message in caplog.text  # in the flow run's log too
