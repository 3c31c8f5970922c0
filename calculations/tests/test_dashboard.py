"""Whose account a launch from the Prefect dashboard runs as (calculations/actions/dashboard.py): the
operator account with its own files; with dashboard.any_users_files and a staff operator account, the
one owner of the files it names. Each refusal is one line that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from django.contrib.auth import get_user_model
from prefect.utilities.callables import parameter_schema

from calculations.actions import do_create_api_token
from calculations.actions.dashboard import check_adopt_flow_run, check_launch_calculation, dashboard_owner, one_line
from calculations.errors import Forbidden, InvalidInput, NotFound
from calculations.models import Calculation
from calculations.orchestrator import WorkflowInfo
from conftest import ApiClient
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db

SMILES = b"CCO ethanol\n"


@pytest.fixture
def operator_upload(db: None) -> Callable[[str, bytes], str]:
    client = ApiClient(do_create_api_token(get_settings().workflow.operator_username))

    def upload(name: str, content: bytes) -> str:
        response = client.upload(name, content)
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    return upload


@pytest.fixture
def any_users_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings().dashboard, "any_users_files", True)


def _make_operator_staff() -> None:
    get_user_model().objects.filter(username=get_settings().workflow.operator_username).update(is_staff=True)


def _pipeline() -> WorkflowInfo:
    from workflows.flows.pipeline import pipeline

    return WorkflowInfo("pipeline", "", parameter_schema(pipeline.fn).model_dump(exclude_unset=True))


def test_the_operator_accounts_own_file_runs_as_it(operator_upload: Callable[[str, bytes], str]) -> None:
    molecules = operator_upload("m.smi", SMILES)
    calc = check_launch_calculation("obabel", {"molecules": molecules}, {"output_format": "sdf"}, None, True)
    assert calc.owner.username == get_settings().workflow.operator_username
    assert calc.events.get().reason == "launched from the Prefect dashboard"


def test_another_users_file_is_refused_naming_the_operator_account_and_the_setting(
    uploaded: Callable[[str, bytes], str],
) -> None:
    molecules = uploaded("m.smi", SMILES)
    with pytest.raises(NotFound) as refused:
        check_launch_calculation("obabel", {"molecules": molecules}, None, None, True)
    message = str(refused.value)
    assert message.startswith(f"inputs.molecules: file {molecules} is not one of the operator account's ('operator')")
    assert "EMGAPI_DASHBOARD__ANY_USERS_FILES=true" in message and "\n" not in message
    assert not Calculation.objects.exists()


def test_with_the_setting_a_staff_operator_launches_on_the_files_owners_account(
    uploaded: Callable[[str, bytes], str], alice_id: int, any_users_files: None
) -> None:
    molecules = uploaded("m.smi", SMILES)
    dashboard_owner({})  # the operator account exists
    _make_operator_staff()
    calc = check_launch_calculation("obabel", {"molecules": molecules}, {}, "local", False)
    assert calc.owner_id == alice_id  # in alice's list, on alice's quota
    operator = get_user_model().objects.get(username="operator")
    event = calc.events.get()
    assert (event.actor, event.reason) == (f"user:{operator.id}", "launched from the Prefect dashboard")


def test_with_the_setting_a_non_staff_operator_account_is_still_refused(
    uploaded: Callable[[str, bytes], str], any_users_files: None
) -> None:
    molecules = uploaded("m.smi", SMILES)
    with pytest.raises(Forbidden, match=r"'operator' is not staff \(tick 'Staff status' on it in the Django admin\)"):
        check_launch_calculation("obabel", {"molecules": molecules}, None, None, True)


def test_files_of_two_owners_are_refused(
    uploaded: Callable[[str, bytes], str], bob: ApiClient, any_users_files: None
) -> None:
    alices = uploaded("a.smi", SMILES)
    bobs = str(bob.upload("b.smi", SMILES).json()["id"])
    dashboard_owner({})
    _make_operator_staff()
    with pytest.raises(InvalidInput, match=r"^the files belong to 2 users \(alice, bob\); name files of one owner$"):
        check_launch_calculation("obabel", {"molecules": alices, "other": bobs}, None, None, True)


def test_an_unknown_file_is_not_found_even_with_the_setting(any_users_files: None) -> None:
    missing = uuid4()
    with pytest.raises(NotFound, match=f"^inputs.molecules: file {missing} not found$"):
        dashboard_owner({missing: "inputs.molecules"})


def test_a_form_value_that_is_not_a_file_id_is_named(db: None) -> None:
    with pytest.raises(InvalidInput, match="^inputs.molecules: 'nope' is not a file id$"):
        check_launch_calculation("obabel", {"molecules": "nope"}, None, None, True)


def test_bad_parameters_are_one_line_naming_the_field(operator_upload: Callable[[str, bytes], str]) -> None:
    molecules = operator_upload("m.smi", SMILES)
    with pytest.raises(InvalidInput) as refused:
        check_launch_calculation("obabel", {"molecules": molecules}, {"output_format": "png", "x": 1}, None, True)
    assert "params.output_format" in one_line(str(refused.value))


def test_a_dashboard_pipeline_naming_another_users_file_is_refused_before_it_is_adopted(
    uploaded: Callable[[str, bytes], str],
) -> None:
    molecules = uploaded("m.smi", SMILES)
    steps = {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{molecules}"}}}
    with pytest.raises(NotFound, match=r"^steps.convert.inputs.molecules: file .* not one of the operator account's"):
        check_adopt_flow_run(_pipeline(), {"steps": steps}, uuid4())


def test_a_dashboard_pipeline_is_adopted_on_the_files_owners_account(
    uploaded: Callable[[str, bytes], str], alice_id: int, any_users_files: None
) -> None:
    molecules = uploaded("m.smi", SMILES)
    dashboard_owner({})
    _make_operator_staff()
    steps = {"convert": {"tool": "obabel", "inputs": {"molecules": f"file:{molecules}"}}}
    flow_run_id = uuid4()
    run = check_adopt_flow_run(_pipeline(), {"steps": steps}, flow_run_id)
    assert run.owner_id == alice_id and run.flow_run_id == flow_run_id
    assert run.events.get().actor == "operator:operator"
    assert check_adopt_flow_run(_pipeline(), {"steps": steps}, flow_run_id).id == run.id  # once


def test_a_dashboard_workflows_parameters_are_checked_against_its_schema(db: None) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with pytest.raises(InvalidInput, match="^params: 'n' is a required property$"):
        check_adopt_flow_run(WorkflowInfo("count", "", schema), {}, uuid4())


def test_one_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 500
