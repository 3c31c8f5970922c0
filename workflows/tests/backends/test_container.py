"""ContainerBackend against the real engine at DOCKER_HOST, with the tools' real images."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from calculations.tools import get_tool
from workflows.backends import BackendUnavailable, ContainerBackend, JobLimit, JobSpec, JobStatus
from workflows.tests.backends.jobs import (
    HMMER_ON_DNA,
    MEASURED_TOOL,
    assert_measured_as_bare,
    hmmsearch_on_dna,
    job_spec,
    until_final,
)

pytestmark = pytest.mark.container
IMAGE = "emgapi/test-sleep:1"  # the test tool's image: a Debian base with sh, sleep, cp


@pytest.fixture(autouse=True)
def _engine(container_engine: str) -> None:
    pass


def _spec(tmp_path: Path, argv: list[str], **options: Any) -> JobSpec:
    return job_spec(tmp_path, argv, image=options.pop("image", IMAGE), **options)


def _run(test: Callable[[ContainerBackend], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test(ContainerBackend()))


def _container_exists(container_id: str) -> bool:
    try:
        docker.from_env().containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False


def test_runs_the_tool_with_inputs_read_only_and_outputs_in_its_workdir(tmp_path: Path) -> None:
    script = f"cp {tmp_path}/inputs/in.txt copy.txt; echo to-stdout; echo to-stderr >&2; touch {tmp_path}/inputs/new"

    async def test(backend: ContainerBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, ["sh", "-c", script]))
        assert handle.details["image"] == IMAGE and handle.details["image_digest"].startswith("sha256:")
        state = await until_final(backend, handle)
        assert state.status is JobStatus.FAILED  # the last command: touching an input is refused
        assert (tmp_path / "work" / "copy.txt").read_text() == "input\n"
        assert (tmp_path / "stdout.txt").read_text() == "to-stdout\n"
        assert "Read-only file system" in (tmp_path / "stderr.txt").read_text()
        assert not (tmp_path / "inputs" / "new").exists()
        assert not _container_exists(handle.job_id)  # removed once its state was recorded

    _run(test)


def test_non_zero_exit_is_a_failure_with_its_code(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, ["sh", "-c", "exit 7"])))
        assert state.status is JobStatus.FAILED and state.exit_code == 7
        assert state.message == "exited with code 7" and state.resource_usage["wall_seconds"] >= 0

    _run(test)


def test_a_tool_that_aborts_keeps_its_last_words_and_its_signal(tmp_path: Path) -> None:
    """hmmsearch given DNA: HMMER's reason on stderr, and SIGABRT. (A tool that is the container's
    PID 1 cannot die by its own SIGABRT: abort() then ends it with SIGSEGV.)"""
    image = get_tool("hmmsearch").image

    async def test(backend: ContainerBackend) -> None:
        assert image is not None
        state = await until_final(backend, await backend.submit(hmmsearch_on_dna(tmp_path, image=image.name)))
        assert (state.status, state.exit_code, state.message) == (JobStatus.FAILED, 134, "killed by SIGABRT")
        assert (tmp_path / "stderr.txt").read_text().rstrip().endswith(HMMER_ON_DNA)

    _run(test)


def test_no_network_unless_the_tool_declares_it(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, ["sh", "-c", "cat /sys/class/net/*/address | wc -l"]))
        assert (await until_final(backend, handle)).status is JobStatus.SUCCEEDED
        assert (tmp_path / "stdout.txt").read_text().strip() == "1"  # loopback only

    _run(test)


def test_a_tool_over_its_memory_is_killed_out_of_memory(tmp_path: Path) -> None:
    """allocate asking for 300 MB in a 100 MB container (no swap beyond it): the kernel kills it,
    and the engine's OOMKilled names the limit, for the retry policy."""
    tool = get_tool("allocate")
    argv = tool.build_argv(tool.params_model.model_validate({"mb": 300}), {})

    async def test(backend: ContainerBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, argv, memory_mb=100)))
        assert (state.status, state.limit) == (JobStatus.FAILED, JobLimit.MEMORY)
        assert state.message == "killed: out of memory (limit of 100 MB)"
        assert 90 <= state.resource_usage["max_rss_mb"] <= 101  # it reached the limit

    _run(test)


def test_usage_is_the_tools_own_as_usr_bin_time_measures_it(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, MEASURED_TOOL, memory_mb=512)))
        assert state.status is JobStatus.SUCCEEDED
        assert (tmp_path / "stdout.txt").read_text() == (tmp_path / "stderr.txt").read_text() == ""
        assert_measured_as_bare(state.resource_usage, MEASURED_TOOL)

    _run(test)


def test_cancel_stops_and_removes_the_container(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, ["sleep", "300"]))
        assert (await backend.wait(handle, 0.5)).status is JobStatus.RUNNING
        started = time.monotonic()
        await backend.cancel(handle, grace_seconds=1)
        state = await backend.poll(handle)
        assert state.status is JobStatus.CANCELED and time.monotonic() - started < 15
        assert not _container_exists(handle.job_id)

    _run(test)


def test_time_limit(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, ["sleep", "60"], time_limit_seconds=1)))
        assert state.status is JobStatus.FAILED and "time limit of 1 s exceeded" in state.message
        assert state.limit is JobLimit.TIME

    _run(test)


def test_a_missing_image_is_a_platform_fault_naming_the_fix(tmp_path: Path) -> None:
    async def test(backend: ContainerBackend) -> None:
        with pytest.raises(BackendUnavailable, match="task images"):
            await backend.submit(_spec(tmp_path, ["true"], image="emgapi/no-such-tool:0"))

    _run(test)


def test_an_unreachable_engine_is_a_platform_fault(tmp_path: Path) -> None:
    async def test(_: ContainerBackend) -> None:
        backend = ContainerBackend(docker_host=f"unix://{tmp_path}/no-engine.sock")
        with pytest.raises(BackendUnavailable, match="cannot reach the container engine"):
            await backend.submit(_spec(tmp_path, ["true"]))

    _run(test)


def test_an_image_name_that_is_not_a_reference_never_reaches_the_engine(tmp_path: Path) -> None:
    """`alpine:x/../../containers` made docker-py ask the engine for /containers/json, and its error
    quoted every running container: names, command lines (another user's API key), mounts."""
    secret = f"--api-key=secret-{time.time_ns()}"
    other = docker.from_env().containers.run(IMAGE, ["sh", "-c", "sleep 60", secret], detach=True, remove=True)
    try:

        async def test(backend: ContainerBackend) -> None:
            for image in ("alpine:x/../../containers", "emgapi/x/../../../containers", "--privileged"):
                with pytest.raises(BackendUnavailable, match="is not a container image reference") as refused:
                    await backend.submit(_spec(tmp_path, ["true"], image=image))
                assert secret not in str(refused.value) and other.name not in str(refused.value)

        _run(test)
    finally:
        other.kill()


@pytest.fixture
def image_without_a_shell() -> Iterator[str]:
    """An image with no files at all: the engine refuses to start anything in it."""
    repository, tag = "emgapi/test-empty", str(time.time_ns())
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    client = docker.from_env()
    answer = client.api.import_image_from_data(empty.getvalue(), repository=repository, tag=tag)
    image = client.images.get(json.loads(answer.strip().splitlines()[-1])["status"])
    image.tag(repository, tag)  # Podman's import names it `:latest`, whatever tag it is given
    yield f"{repository}:{tag}"
    client.images.remove(image.id, force=True)


def test_an_engine_refusal_is_said_in_a_fixed_vocabulary(tmp_path: Path, image_without_a_shell: str) -> None:
    """The engine's own answer (runtime internals, paths) goes to the worker's log, not to the user."""

    async def test(backend: ContainerBackend) -> None:
        with pytest.raises(BackendUnavailable) as refused:
            await backend.submit(_spec(tmp_path, ["true"], image=image_without_a_shell))
        message = str(refused.value)
        assert message == (
            "could not start the container: the command is not in the image (the platform starts it with /bin/sh)"
        )

    _run(test)
