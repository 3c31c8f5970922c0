"""SlurmBackend: the batch script and state interpretation, then real jobs on the dev cluster."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest

from calculations.tools import get_tool
from workflows.backends import BackendUnavailable, JobLimit, JobSpec, JobStatus, SlurmBackend
from workflows.backends.base import Mount
from workflows.backends.slurm import SACCT_FIELDS, _Job, _memory_kill, batch_script, container_command, sacct_usage
from workflows.tests.backends.jobs import (
    HMMER_ON_DNA,
    MEASURED_TOOL,
    assert_measured_as_bare,
    hmmsearch_on_dna,
    job_spec,
    until_final,
)


def _spec(tmp_path: Path, argv: list[str], **options: Any) -> JobSpec:
    return job_spec(tmp_path, argv, **{"memory_mb": 100, **options})


# --- no cluster needed ----------------------------------------------------------------------


def test_the_batch_script_quotes_every_word(tmp_path: Path) -> None:
    hostile = "x'; rm -rf / #$(reboot)"
    script = batch_script(["echo", hostile], _spec(tmp_path, []), {"HOME": "/h o"})
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert result.stdout == f"{hostile}\n"  # printed, never run
    assert (tmp_path / "exit_code").read_text() == "0\n"


def test_a_variable_name_that_is_shell_code_never_reaches_the_script(tmp_path: Path) -> None:
    """`export A;touch injected;B=…` ran `touch` on the node, outside any container."""
    with pytest.raises(BackendUnavailable, match="'A;touch injected;B' is not a variable name"):
        batch_script(["true"], _spec(tmp_path, []), {"OK": "1", "A;touch injected;B": "v"})
    script = batch_script(["sh", "-c", 'echo "$V"'], _spec(tmp_path, []), {"V": "x'; touch injected; '"})
    result = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.stdout == "x'; touch injected; '\n" and not (tmp_path / "injected").exists()


def test_container_command_keeps_the_isolation_of_the_container_backend(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ["prodigal", "-i", "x"], image="emgapi/prodigal:2.6.3")
    argv, remove = container_command("docker", spec)
    assert argv[:4] == ["docker", "run", "--name", spec.name] and argv[-3:] == ["prodigal", "-i", "x"]
    assert "--rm" not in argv and remove == ["docker", "rm", "--force", spec.name]
    assert "--read-only" in argv and argv[argv.index("--network") + 1] == "none"
    assert f"{tmp_path}/inputs:{tmp_path}/inputs:ro" in argv and f"{tmp_path}/work:{tmp_path}/work:rw" in argv


@pytest.mark.parametrize(
    ("state", "exit_code", "canceled", "status", "message"),
    [
        ("COMPLETED", 0, False, JobStatus.SUCCEEDED, ""),
        ("FAILED", 7, False, JobStatus.FAILED, "exited with code 7"),
        ("CANCELLED", None, True, JobStatus.CANCELED, "canceled"),
        ("CANCELLED", None, False, JobStatus.STOPPED, "cancelled outside the platform"),
        ("TIMEOUT", None, False, JobStatus.FAILED, "time limit of 60 s exceeded"),
        ("OUT_OF_MEMORY", None, False, JobStatus.FAILED, "out of memory"),
        ("NODE_FAIL", None, False, JobStatus.LOST, "ended NODE_FAIL"),
        (None, None, False, JobStatus.LOST, "disappeared"),  # gone from squeue, no exit status: not a success
        (None, 0, False, JobStatus.SUCCEEDED, ""),  # gone from squeue, but its exit status was recorded
    ],
)
def test_final_states_are_read_without_guessing(
    state: str | None, exit_code: int | None, canceled: bool, status: JobStatus, message: str
) -> None:
    job = _Job(None, 60, 100, canceled=canceled)
    result = SlurmBackend._interpret("42", job, state, exit_code, None, {})
    assert result.status is status and message in result.message
    # a limit is named, so the policy table can tell it from the tool's own failure
    assert result.limit is {"TIMEOUT": JobLimit.TIME, "OUT_OF_MEMORY": JobLimit.MEMORY}.get(state or "")


@pytest.mark.parametrize(
    ("exit_code", "status", "limit"), [(137, JobStatus.FAILED, JobLimit.MEMORY), (0, JobStatus.SUCCEEDED, None)]
)
def test_a_tool_its_container_killed_for_memory_is_out_of_memory(
    exit_code: int, status: JobStatus, limit: JobLimit | None
) -> None:
    """A job that runs the tool's container: the container's limit kills it, and Slurm only sees
    the exit code; the container's shell recorded the kernel's kill (a tool that survived the
    loss of a child to it and succeeded is a success)."""
    slurm_state = "COMPLETED" if exit_code == 0 else "FAILED"
    kill = "in its container"
    state = SlurmBackend._interpret("42", _Job(None, 60, 100), slurm_state, exit_code, None, {}, memory_kill=kill)
    assert (state.status, state.limit) == (status, limit)
    assert limit is None or state.message == "killed: out of memory (limit of 100 MB; in its container)"


def test_a_job_slurmstepd_killed_for_memory_is_out_of_memory(tmp_path: Path) -> None:
    """JobAcctGatherParams=OverMemoryKill (no cgroups): Slurm 22.05 ends the job FAILED, ExitCode
    0:9, reason JobLaunchFailure; only slurmstepd's words on the job's stderr say why."""
    stderr = tmp_path / "stderr.txt"
    stderr.write_text(
        "tool's own words\nslurmstepd-localhost: error: StepId=1.batch exceeded memory limit (117329920 > "
        "104857600), being killed\nslurmstepd-localhost: error: Exceeded job memory limit\n"
        "slurmstepd-localhost: error: *** JOB 1 ON localhost CANCELLED AT 2026-12-04T17:28:14 ***\n"
    )
    job = _Job(tmp_path, 60, 100, stderr_path=stderr)
    killed = _memory_kill(job, "FAILED", (0, 9))
    state = SlurmBackend._interpret("1", job, "FAILED", 0, (0, 9), {}, memory_kill=killed)
    assert (state.status, state.limit) == (JobStatus.FAILED, JobLimit.MEMORY)
    assert state.message == "killed: out of memory (limit of 100 MB; Slurm)"
    assert _memory_kill(job, "FAILED", (1, 0)) == ""  # slurmstepd's line, printed by a tool that exited 1
    stderr.write_text("Exceeded job memory limit\n")  # the tool's own words are not slurmstepd's
    assert _memory_kill(job, "FAILED", (0, 9)) == ""


def test_accounting_gives_the_batch_steps_usage() -> None:
    """A cluster with slurmdbd: `sacct -P -n -o SACCT_FIELDS` rows of a job (the tool ran in its
    batch step; the allocation's own row has no MaxRSS)."""
    rows = [line.split("|") for line in ("42|OUT_OF_MEMORY|0:125|00:01:05|||", "42.batch|OUT_OF_MEMORY|0:125|"
            "00:01:05|1536K|01:02.500|00:00.250", "42.extern|COMPLETED|0:0|00:01:05|0||")]  # fmt: skip
    assert all(len(row) == len(SACCT_FIELDS.split(",")) for row in rows)
    usage = sacct_usage(rows[0], rows[1])
    assert usage == {"wall_seconds": 65.0, "max_rss_mb": 1.5, "user_cpu_seconds": 62.5, "system_cpu_seconds": 0.25}
    assert sacct_usage(rows[0], None) == {"wall_seconds": 65.0}  # never a made-up 0
    assert sacct_usage("7|COMPLETED|0:0|1-02:00:00|||".split("|"), "7.batch|COMPLETED|0:0|x|2G|x|".split("|")) == {
        "wall_seconds": 93600.0, "max_rss_mb": 2048.0,
    }  # fmt: skip


# --- on the dev cluster ---------------------------------------------------------------------

slurm = pytest.mark.slurm


@pytest.fixture
def cluster(slurm_cluster: str) -> None:
    pass


def _run(test: Callable[[SlurmBackend], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test(SlurmBackend(poll_seconds=0.3)))


def _slurm_state(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    ).stdout


@slurm
def test_a_job_runs_with_live_logs_and_without_the_workers_environment(
    cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMGAPI_SECRET_KEY", "must-not-leak")

    async def test(backend: SlurmBackend) -> None:
        spec = _spec(tmp_path, ["sh", "-c", 'pwd; echo "[$EMGAPI_SECRET_KEY]"; echo warn >&2'], cpus=1)
        handle = await backend.submit(spec)
        assert handle.job_id.isdigit()
        state = await until_final(backend, handle)
        assert state.status is JobStatus.SUCCEEDED and state.exit_code == 0
        assert (tmp_path / "stdout.txt").read_text() == f"{tmp_path / 'work'}\n[]\n"
        assert (tmp_path / "stderr.txt").read_text() == "warn\n"
        assert "COMPLETED" in _slurm_state(handle.job_id)

    _run(test)


@slurm
def test_a_failing_job_keeps_its_exit_code(cluster: None, tmp_path: Path) -> None:
    async def test(backend: SlurmBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, ["sh", "-c", "exit 7"])))
        assert state.status is JobStatus.FAILED and state.exit_code == 7 and state.message == "exited with code 7"

    _run(test)


@slurm
@pytest.mark.parametrize(
    "runtime",
    [pytest.param("", id="on-the-node"), pytest.param("docker", id="in-its-container", marks=pytest.mark.container)],
)
def test_a_tool_that_aborts_keeps_its_last_words_and_its_signal(
    cluster: None, runtime: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """hmmsearch given DNA: HMMER's reason ends its stderr (no "Aborted" from the job's shell after
    it), and the error names SIGABRT (in its container, as PID 1, it died by SIGSEGV)."""
    image = get_tool("hmmsearch").image
    assert image is not None
    if runtime:
        request.getfixturevalue("container_engine")

    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(poll_seconds=0.3, container_runtime=runtime)
        spec = hmmsearch_on_dna(tmp_path, memory_mb=500, image=image.name)
        state = await until_final(backend, await backend.submit(spec))
        assert (state.status, state.exit_code, state.message) == (JobStatus.FAILED, 134, "killed by SIGABRT")
        assert (tmp_path / "stderr.txt").read_text().rstrip().endswith(HMMER_ON_DNA)

    _run(test)


@slurm
def test_cancel_ends_the_job(cluster: None, tmp_path: Path) -> None:
    async def test(backend: SlurmBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, ["sleep", "300"]))
        await backend.wait(handle, 1)
        await backend.cancel(handle, grace_seconds=2)
        state = await backend.poll(handle)
        assert state.status is JobStatus.CANCELED
        assert "CANCELLED" in _slurm_state(handle.job_id)

    _run(test)


@slurm
def test_a_job_cancelled_from_outside_is_reported_as_such(cluster: None, tmp_path: Path) -> None:
    async def test(backend: SlurmBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, ["sleep", "300"]))
        await backend.wait(handle, 1)
        subprocess.run(["scancel", handle.job_id], check=True)
        state = await until_final(backend, handle)
        assert state.status is JobStatus.STOPPED
        assert (
            state.message
            == f"Slurm job {handle.job_id} was cancelled outside the platform (scancel or an administrator)"
        )

    _run(test)


@slurm
def test_a_job_slurm_refuses_is_a_platform_fault_with_slurms_reason(cluster: None, tmp_path: Path) -> None:
    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(partition="no-such-partition")
        with pytest.raises(BackendUnavailable, match="invalid partition") as refused:
            await backend.submit(_spec(tmp_path, ["true"]))
        # said in the platform's words: sbatch's own text stays in the worker's log
        assert str(refused.value) == "Slurm refused the job: invalid partition (EMGAPI_SLURM__PARTITION)"

    _run(test)


@slurm
@pytest.mark.container
def test_a_job_can_run_the_tools_container(cluster: None, container_engine: str, tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "in.txt").write_text("from the host\n")

    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(poll_seconds=0.3, container_runtime="docker")
        script = f"cat {tmp_path}/inputs/in.txt > copy.txt; cat /etc/debian_version"
        spec = _spec(tmp_path, ["sh", "-c", script], image="emgapi/test-sleep:1")
        handle = await backend.submit(spec)
        assert handle.details == {"image": "emgapi/test-sleep:1"}
        state = await until_final(backend, handle)
        assert state.status is JobStatus.SUCCEEDED, (tmp_path / "stderr.txt").read_text()
        assert (tmp_path / "work" / "copy.txt").read_text() == "from the host\n"
        assert (tmp_path / "stdout.txt").read_text().startswith("12.")  # Debian 12, inside the image

    _run(test)


@slurm
@pytest.mark.container
def test_a_failing_tool_in_its_container_fails_the_job_and_its_container_goes(
    cluster: None, container_engine: str, tmp_path: Path
) -> None:
    """On either engine (the Podman phase runs this too): with `docker run --rm`, Podman before 4.6
    answered the CLI's wait with 0 whatever the tool's exit code, and a failed tool read as a success."""

    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(poll_seconds=0.3, container_runtime="docker")
        spec = _spec(tmp_path, ["sh", "-c", "echo failing >&2; exit 7"], image="emgapi/test-sleep:1")
        state = await until_final(backend, await backend.submit(spec))
        assert (state.status, state.exit_code) == (JobStatus.FAILED, 7), (tmp_path / "stderr.txt").read_text()
        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(spec.name)

    _run(test)


@slurm
@pytest.mark.container
def test_a_tes_executor_runs_in_its_container_with_the_tasks_directories(
    cluster: None, container_engine: str, tmp_path: Path
) -> None:
    """A TES task on Slurm: its directories bound at their container paths, its own working directory,
    and two executors in turn appending to one pair of log files."""
    (tmp_path / "fs" / "data").mkdir(parents=True)
    (tmp_path / "fs" / "data" / "in.txt").write_text("from the task\n")
    mounts = (Mount(str(tmp_path / "fs" / "data"), "/data", "rw"),)

    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(poll_seconds=0.3, container_runtime="docker")
        for script in ["cp in.txt out.txt; echo first", "pwd; echo second"]:
            spec = replace(
                _spec(tmp_path, ["sh", "-c", script], image="emgapi/test-sleep:1"),
                mounts=mounts, container_workdir="/data",
            )  # fmt: skip
            state = await until_final(backend, await backend.submit(spec))
            assert state.status is JobStatus.SUCCEEDED, (tmp_path / "stderr.txt").read_text()
        assert (tmp_path / "fs" / "data" / "out.txt").read_text() == "from the task\n"
        assert (tmp_path / "stdout.txt").read_text() == "first\n/data\nsecond\n"
        without_runtime = replace(_spec(tmp_path, ["true"], image="emgapi/test-sleep:1"), mounts=mounts)
        with pytest.raises(BackendUnavailable, match="EMGAPI_SLURM__CONTAINER_RUNTIME"):
            await SlurmBackend(container_runtime="").submit(without_runtime)

    _run(test)


@slurm
def test_an_environment_name_cannot_inject_into_the_job_on_the_cluster(cluster: None, tmp_path: Path) -> None:
    async def test(backend: SlurmBackend) -> None:
        spec = _spec(tmp_path, ["true"], env={"A;touch injected;B": "v"})
        try:
            await until_final(backend, await backend.submit(spec))  # (as the job ran before the fix)
            refused = ""
        except BackendUnavailable as exc:
            refused = str(exc)
        assert not (tmp_path / "work" / "injected").exists()
        assert "'A;touch injected;B' is not a variable name" in refused

    _run(test)


@slurm
@pytest.mark.container
def test_a_tes_executors_environment_reaches_its_container_never_the_nodes_shell(
    cluster: None, container_engine: str, tmp_path: Path
) -> None:
    """A task's PATH (or LD_PRELOAD) set in the job's shell would choose what the node runs: the
    `docker` CLI itself. It is the container's environment only, its values passed as given."""
    (tmp_path / "fs" / "data").mkdir(parents=True)
    mounts = (Mount(str(tmp_path / "fs" / "data"), "/data", "rw"),)
    env = {"PATH": "/nowhere", "GREETING": "x'; touch /data/injected; '$(id)"}

    async def test(_: SlurmBackend) -> None:
        backend = SlurmBackend(poll_seconds=0.3, container_runtime="docker")
        spec = replace(
            _spec(tmp_path, ["/bin/sh", "-c", 'echo "$GREETING"; echo "$PATH"'], image="emgapi/test-sleep:1"),
            mounts=mounts, container_workdir="/data", env=env,
        )  # fmt: skip
        state = await until_final(backend, await backend.submit(spec))
        assert state.status is JobStatus.SUCCEEDED, (tmp_path / "stderr.txt").read_text()
        assert (tmp_path / "stdout.txt").read_text() == f"{env['GREETING']}\n/nowhere\n"
        assert not (tmp_path / "fs" / "data" / "injected").exists()
        assert "/nowhere" not in (tmp_path / "job.sh").read_text().split("docker run")[0]

    _run(test)


def test_sbatch_asks_for_the_granted_cpus_memory_time_and_gpus(tmp_path: Path) -> None:
    spec = job_spec(tmp_path, ["true"], cpus=4, memory_mb=3000, time_limit_seconds=90, gpus=2)
    args = SlurmBackend()._sbatch_args(spec)
    assert {"--cpus-per-task=4", "--mem=3000M", "--time=2", "--gres=gpu:2"} <= set(args)
    without = SlurmBackend()._sbatch_args(replace(spec, gpus=0))
    assert not any(arg.startswith("--gres") for arg in without)


@slurm
@pytest.mark.parametrize(
    "runtime",
    [pytest.param("", id="on-the-node"), pytest.param("docker", id="in-its-container", marks=pytest.mark.container)],
)
def test_a_tool_over_its_memory_ends_out_of_memory(
    cluster: None, runtime: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """allocate asking for 300 MB of a job given 100 MB: on the node the cluster kills it (the dev
    cluster: the job's memory cgroup) and Slurm's OUT_OF_MEMORY names the limit, for the retry
    policy; in its container, the container's limit kills it, as its shell recorded."""
    if runtime:
        request.getfixturevalue("container_engine")
    tool = get_tool("allocate")
    argv = tool.build_argv(tool.params_model.model_validate({"mb": 300}), {})

    async def test(backend: SlurmBackend) -> None:
        handle = await backend.submit(_spec(tmp_path, argv, image="emgapi/test-sleep:1" if runtime else None))
        state = await until_final(backend, handle)
        assert (state.status, state.limit) == (JobStatus.FAILED, JobLimit.MEMORY)
        where = "in its container" if runtime else "Slurm"
        assert state.message == f"killed: out of memory (limit of 100 MB; {where})"
        assert ("FAILED" if runtime else "OUT_OF_MEMORY") in _slurm_state(handle.job_id)

    asyncio.run(test(SlurmBackend(poll_seconds=0.3, container_runtime=runtime)))


@slurm
def test_usage_is_the_tools_own_as_usr_bin_time_measures_it(cluster: None, tmp_path: Path) -> None:
    async def test(backend: SlurmBackend) -> None:
        state = await until_final(backend, await backend.submit(_spec(tmp_path, MEASURED_TOOL, memory_mb=512)))
        assert state.status is JobStatus.SUCCEEDED
        assert (tmp_path / "stdout.txt").read_text() == (tmp_path / "stderr.txt").read_text() == ""
        assert_measured_as_bare(state.resource_usage, MEASURED_TOOL)

    _run(test)
