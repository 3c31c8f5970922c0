"""The worker's adjustments to Prefect's engine (the in-process execution is covered by test_integration)."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from uuid import uuid4

import prefect.events.schemas.events
import prefect.flow_engine
import prefect.results
import pytest

from workflows.worker.prefect_patch import (
    cache_default_result_storage,
    disable_suspension_observer,
    read_event_label_limit_once,
)


def test_the_per_run_suspension_observer_is_switched_off() -> None:
    # If a Prefect upgrade renames the observer, this fails instead of silently costing a thread
    # and a websocket per waiting calculation again.
    disable_suspension_observer()
    observer = prefect.flow_engine.observe_flow_run_suspension(uuid4(), None)  # type: ignore[arg-type]
    assert isinstance(observer, nullcontext)


def test_the_default_result_storage_is_asked_of_the_server_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect reads it twice at every flow run's start, with a new client each time: the worker keeps
    the answer. (If an upgrade renames the readers, this fails instead of silently costing it again.)"""
    block, reads = uuid4(), []

    def read() -> object:
        reads.append("sync")
        return block

    async def aread() -> object:
        reads.append("async")
        return block

    monkeypatch.setattr(prefect.results, "_read_server_default_result_storage_block_id", read)
    monkeypatch.setattr(prefect.results, "_aread_server_default_result_storage_block_id", aread)
    cache_default_result_storage(seconds=60)
    for _ in range(3):
        assert prefect.results._read_server_default_result_storage_block_id() == block
        assert asyncio.run(prefect.results._aread_server_default_result_storage_block_id()) == block
    assert reads == ["sync"]  # once, for both: the next flow runs start without a request


def test_the_default_result_storage_is_asked_again_once_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    monkeypatch.setattr(prefect.results, "_read_server_default_result_storage_block_id", lambda: reads.append(1))
    monkeypatch.setattr(prefect.results, "_aread_server_default_result_storage_block_id", aread_none)
    cache_default_result_storage(seconds=0)
    prefect.results._read_server_default_result_storage_block_id()
    prefect.results._read_server_default_result_storage_block_id()
    assert len(reads) == 2


async def aread_none() -> None:
    return None


def test_the_event_label_limit_is_read_once_and_still_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    module = prefect.events.schemas.events
    name = "PREFECT_EVENTS_MAXIMUM_LABELS_PER_RESOURCE"
    monkeypatch.setattr(module, name, getattr(module, name))  # (put back afterwards)
    limit = getattr(module, name).value()
    read_event_label_limit_once()
    reads: list[int] = []
    monkeypatch.setattr("prefect.settings.legacy.get_current_settings", lambda: reads.append(1))
    labels = {"prefect.resource.id": "x", **{f"label-{i}": "v" for i in range(limit - 1)}}
    assert module.Resource(labels).id == "x"  # (without reading any setting)
    with pytest.raises(ValueError, match="maximum number of labels"):
        module.Resource({**labels, "one-too-many": "v"})
    assert reads == []
