"""Building calculations in a given state for tests, bypassing the worker."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from calculations.models import Calculation
from calculations.provenance import Provenance
from calculations.states import RunState


def make_calculation(state: RunState = RunState.QUEUED, *, username: str = "carol") -> Calculation:
    owner, _ = get_user_model().objects.get_or_create(username=username)
    provenance = Provenance(tool="prodigal", tool_version="2.6.3", params={}, inputs={})
    return Calculation.objects.create(
        owner=owner,
        tool="prodigal",
        tool_version="2.6.3",
        state=state,
        cache_key="0" * 64,
        provenance=provenance.model_dump(mode="json"),
    )
