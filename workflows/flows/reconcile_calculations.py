"""reconcile-calculations: the scheduled sweep that keeps Django and Prefect in agreement.

- QUEUED calculations that never got a flow run (Prefect was unreachable) are dispatched.
- Active calculations whose flow run ended (crashed, failed, cancelled) without finishing them
  are moved to SYSTEM_ERROR (or CANCELED, if a cancel was pending).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.utils import timezone
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from calculations import actions
from calculations.errors import InvalidTransition
from calculations.models import Calculation
from calculations.states import ACTIVE_STATES, CalculationState
from emgapiv2.config import get_settings
from workflows.dispatch import dispatch_calculation

S = CalculationState


def _undispatched() -> list[UUID]:
    cutoff = timezone.now() - timedelta(seconds=get_settings().reconciler.dispatch_after_seconds)
    return list(
        Calculation.objects.filter(
            state=S.QUEUED, flow_run_id__isnull=True, cached_from__isnull=True, created_at__lt=cutoff
        ).values_list("id", flat=True)
    )


def _in_flight() -> list[dict[str, Any]]:
    return list(
        Calculation.objects.filter(state__in=ACTIVE_STATES, flow_run_id__isnull=False).values(
            "id", "attempt", "state", "flow_run_id"
        )
    )


def _settle(calc: dict[str, Any], flow_state: str) -> str:
    reason = f"flow run {calc['flow_run_id']} ended {flow_state} without finishing the calculation"
    try:
        if calc["state"] == S.CANCELING:
            actions.do_finish_cancel(calc["id"], calc["attempt"], reason=reason, actor=actions.RECONCILER_ACTOR)
            return "canceled"
        actions.do_fail_calculation(
            calc["id"], calc["attempt"], state=S.SYSTEM_ERROR, error=reason, actor=actions.RECONCILER_ACTOR
        )
        return "failed"
    except InvalidTransition:
        return "moved on"


@flow(name="reconcile-calculations", persist_result=False)
async def reconcile_calculations_flow() -> dict[str, int]:
    logger = get_run_logger()
    counts = {"dispatched": 0, "failed": 0, "canceled": 0}
    for calculation_id in await sync_to_async(_undispatched)():
        dispatch_calculation(calculation_id)
        counts["dispatched"] += 1

    in_flight = await sync_to_async(_in_flight)()
    if in_flight:
        async with get_client() as client:
            flow_runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[c["flow_run_id"] for c in in_flight]))
            )
        ended = {run.id: run.state.type.value for run in flow_runs if run.state is not None and run.state.is_final()}
        for calc in in_flight:
            if calc["flow_run_id"] in ended:
                outcome = await sync_to_async(_settle)(calc, ended[calc["flow_run_id"]])
                if outcome in counts:
                    counts[outcome] += 1
    if any(counts.values()):
        logger.info("reconciled: %s", counts)
    return counts
