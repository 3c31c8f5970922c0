"""A failed or canceled calculation run again, as a new calculation of the same owner (the admin's
rerun): whatever its program, the request it was accepted from is checked again, as if it had just
been submitted, and the cache is not asked (a rerun is wanted because the earlier one failed). The
two are linked: the new one's `rerun_of` and first event (whose actor is who pressed it), and an
event on the old one naming the new one."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit
from uuid import UUID

from django.db import transaction

from calculations.actions.submissions import Rerun, check_create_calculation
from calculations.actions.tes import check_create_tes_task
from calculations.actions.transitions import record_event
from calculations.errors import InvalidInput, InvalidTransition
from calculations.models import Calculation
from calculations.programs import TES_RUNNER, TOOL_RUNNER, get_program
from calculations.states import RunState
from calculations.tes.schemas import TaskIn
from emgapiv2.config import get_settings

RERUNNABLE = frozenset({RunState.EXECUTOR_ERROR, RunState.SYSTEM_ERROR, RunState.CANCELED})


def _rerun_tool(calc: Calculation, rerun: Rerun) -> Calculation:
    inputs = dict(calc.inputs.values_list("role", "file_id"))
    if None in inputs.values():
        raise InvalidInput("an input file was deleted since")
    return check_create_calculation(
        calc.owner_id,
        calc.tool,
        inputs=inputs,
        params=calc.params,
        use_cache=False,
        backend=calc.backend or None,
        rerun=rerun,
    )


def _rerun_tes_task(calc: Calculation, rerun: Rerun) -> Calculation:
    """The task as accepted, checked again (its images, its files)."""
    hosts = {urlsplit(get_settings().public_url).netloc}
    return check_create_tes_task(calc.owner_id, TaskIn.model_validate(calc.params), hosts=hosts, rerun=rerun)


_RESUBMIT: dict[str, Callable[[Calculation, Rerun], Calculation]] = {
    TOOL_RUNNER: _rerun_tool,
    TES_RUNNER: _rerun_tes_task,
}


@transaction.atomic
def check_rerun_calculation(calculation_id: UUID, *, actor: str) -> Calculation:
    """The new calculation, created by `actor` (a staff member); InvalidTransition if this one has not
    failed, or the check's own error."""
    # not locked: an ended calculation's state no longer changes, and its owner's lock comes first
    calc = Calculation.objects.get(id=calculation_id)
    if calc.state not in RERUNNABLE:
        raise InvalidTransition(f"{calc.id} is {calc.state}: only a failed or canceled one is rerun")
    new = _RESUBMIT[get_program(calc.tool).runner](calc, Rerun(calc.id, actor))
    record_event(calc, calc.state, calc.state, actor, f"rerun as calculation {new.id}")
    return new
