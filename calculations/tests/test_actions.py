"""Actions the other tests do not reach: followers of a failed leader, the cancel races, fenced
heartbeats, and launches that happen only after commit."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.db import transaction
from django.utils import timezone

from calculations.actions import (
    RECONCILER_ACTOR,
    JobOutcome,
    OutputBlob,
    do_end_attempt,
    do_record_heartbeats,
    do_request_cancel,
)
from calculations.models import Calculation, File
from calculations.orchestrator import OrchestratorHealth, WorkflowInfo, register_orchestrator
from calculations.policies import AttemptEnd
from calculations.provenance import update_attempt
from calculations.states import RunState
from calculations.storage import get_storage
from calculations.tests.factories import make_calculation

S = RunState
pytestmark = pytest.mark.django_db
OUTCOME = JobOutcome(0, {}, None, None)
OUTPUT = OutputBlob(role="proteins", name="p.faa", sha256="a" * 64, size=10)


class RecordingOrchestrator:
    """Test double for the Prefect orchestrator (the integration tests use the real one): it records
    what the actions asked it to launch or stop."""

    name = "recording"

    def __init__(self) -> None:
        self.launched: list[UUID] = []
        self.stopped: list[UUID] = []
        self.launched_workflow_runs: list[UUID] = []

    def launch(self, kind: str, run_id: UUID) -> None:
        (self.launched_workflow_runs if kind == "workflow run" else self.launched).append(run_id)

    def stop_run(self, flow_run_id: UUID) -> None:
        self.stopped.append(flow_run_id)

    def workflows(self) -> list[WorkflowInfo]:
        return []

    def paused_input_schema(self, flow_run_id: UUID) -> dict[str, Any]:
        return {}

    def resume_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> None:
        pass

    def health(self) -> OrchestratorHealth:
        return OrchestratorHealth(ok=True, detail="recording")


@pytest.fixture
def orchestrator() -> Iterator[RecordingOrchestrator]:
    recording = RecordingOrchestrator()
    previous = register_orchestrator(recording)
    yield recording
    register_orchestrator(previous)


def _in(state: RunState, *, attempt: int = 1, cache_key: str = "1" * 64) -> Calculation:
    calc = make_calculation(state)
    calc.attempt = attempt
    calc.cache_key = cache_key
    calc.provenance = update_attempt(calc.provenance, attempt, backend="local", host="h")
    calc.flow_run_id = uuid4()
    calc.save()
    return calc


def _follower_of(leader: Calculation) -> Calculation:
    follower = make_calculation(S.QUEUED)
    follower.cache_key, follower.cached_from = leader.cache_key, leader
    follower.save()
    return follower


def _committed(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with transaction.atomic():
        return action(*args, **kwargs)


def test_a_leader_that_fails_launches_each_follower_on_its_own(
    orchestrator: RecordingOrchestrator, django_capture_on_commit_callbacks: Any
) -> None:
    leader = _in(S.RUNNING)
    followers = [_follower_of(leader) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        failed = _committed(do_end_attempt, leader.id, 1, AttemptEnd.TOOL_FAILED, message="exited with code 1")
    assert failed.state == S.EXECUTOR_ERROR
    assert sorted(orchestrator.launched) == sorted(f.id for f in followers)
    for follower in followers:
        follower.refresh_from_db()
        # it runs by itself now: a follower never inherits a failure
        assert (follower.state, follower.cached_from_id) == (S.QUEUED, None)


def test_a_leader_being_retried_keeps_its_followers(
    orchestrator: RecordingOrchestrator, django_capture_on_commit_callbacks: Any
) -> None:
    leader = _in(S.RUNNING)
    follower = _follower_of(leader)
    with django_capture_on_commit_callbacks(execute=True):
        retried = _committed(do_end_attempt, leader.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost")
    assert (retried.state, retried.attempt) == (S.QUEUED, 2)
    assert orchestrator.launched == [leader.id]  # only the leader's next attempt
    follower.refresh_from_db()
    assert follower.cached_from_id == leader.id


def test_a_leader_that_completes_completes_its_followers_with_their_own_outputs() -> None:
    leader = _in(S.RUNNING)
    follower = _follower_of(leader)
    stored = get_storage().put(io.BytesIO(b">p\nMKV\n"))
    output = OutputBlob(role="proteins", name="p.faa", sha256=stored.sha256, size=stored.size)
    _committed(do_end_attempt, leader.id, 1, AttemptEnd.SUCCEEDED, outputs=[output], outcome=OUTCOME)
    follower.refresh_from_db()
    assert follower.state == S.COMPLETE
    theirs = File.objects.get(produced_by=follower)
    assert theirs.owner_id == follower.owner_id and theirs.sha256 == stored.sha256


def test_a_cancel_that_arrives_as_the_tool_succeeds_wins_and_keeps_no_outputs() -> None:
    calc = _in(S.RUNNING)
    _committed(do_request_cancel, calc.id, actor="user:1")
    ended = _committed(do_end_attempt, calc.id, 1, AttemptEnd.SUCCEEDED, outputs=[OUTPUT], outcome=OUTCOME)
    assert ended.state == S.CANCELED
    assert not File.objects.filter(produced_by=calc).exists()
    assert ended.events.last().reason == "canceled as the tool finished; outputs discarded"


@pytest.mark.parametrize("end", [AttemptEnd.TOOL_FAILED, AttemptEnd.WORKER_LOST, AttemptEnd.STORAGE_FAILED])
def test_a_cancel_that_arrives_as_the_attempt_fails_wins_and_is_never_retried(end: AttemptEnd) -> None:
    calc = _in(S.RUNNING)
    _committed(do_request_cancel, calc.id, actor="user:1")
    ended = _committed(do_end_attempt, calc.id, 1, end, message="it broke")
    assert (ended.state, ended.attempt, ended.error) == (S.CANCELED, 1, "")


def test_a_canceling_calculation_whose_worker_is_lost_is_canceled_by_the_reconciler() -> None:
    calc = _in(S.RUNNING)
    _committed(do_request_cancel, calc.id, actor="user:1")
    ended = _committed(
        do_end_attempt, calc.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost", actor=RECONCILER_ACTOR
    )
    assert ended.state == S.CANCELED
    assert ended.events.last().actor == RECONCILER_ACTOR


def test_canceling_a_queued_leader_launches_its_followers(
    orchestrator: RecordingOrchestrator, django_capture_on_commit_callbacks: Any
) -> None:
    leader = _in(S.QUEUED)
    follower = _follower_of(leader)
    with django_capture_on_commit_callbacks(execute=True):
        canceled = _committed(do_request_cancel, leader.id, actor="user:1")
    assert canceled.state == S.CANCELED
    assert follower.id in orchestrator.launched
    assert orchestrator.stopped == [leader.flow_run_id]  # its scheduled flow run is cancelled too


def test_canceling_a_follower_leaves_its_leader_running() -> None:
    leader = _in(S.RUNNING)
    follower = _follower_of(leader)
    assert _committed(do_request_cancel, follower.id, actor="user:1").state == S.CANCELED
    leader.refresh_from_db()
    assert leader.state == S.RUNNING


def test_nothing_is_launched_when_the_transaction_rolls_back(
    orchestrator: RecordingOrchestrator, django_capture_on_commit_callbacks: Any
) -> None:
    leader = _in(S.RUNNING)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):  # noqa: PT012
        with transaction.atomic():
            do_end_attempt(leader.id, 1, AttemptEnd.WORKER_LOST, message="heartbeat lost")
            raise RuntimeError("the caller failed after the action")
    leader.refresh_from_db()
    assert (leader.state, leader.attempt, orchestrator.launched) == (S.RUNNING, 1, [])


def test_a_slow_worker_on_attempt_n_does_not_keep_attempt_n_plus_1_alive() -> None:
    calc = _in(S.RUNNING, attempt=2)
    stale = timezone.now() - timedelta(minutes=5)
    Calculation.objects.filter(id=calc.id).update(heartbeat_at=stale)
    do_record_heartbeats({calc.id: 1})  # the old worker still thinks it runs attempt 1
    calc.refresh_from_db()
    assert calc.heartbeat_at == stale  # so the reconciler can still find attempt 2's worker dead
    do_record_heartbeats({calc.id: 2})
    calc.refresh_from_db()
    assert calc.heartbeat_at is not None and calc.heartbeat_at > stale
