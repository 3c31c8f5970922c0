"""A tool's container gets the same isolation whether docker-py starts it (container backend) or
`docker run`/`podman run` does (a Slurm job running the tool's image). No engine needed."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import pytest

from workflows.backends import BackendUnavailable, JobSpec
from workflows.backends.container import container_options
from workflows.backends.isolation import STDERR_IN_CONTAINER, STDOUT_IN_CONTAINER, USAGE_IN_CONTAINER
from workflows.backends.shells import in_container
from workflows.backends.slurm import container_command
from workflows.tests.backends.jobs import job_spec

IMAGE = "emgapi/prodigal:2.6.3"
ARGV = ["prodigal", "-i", "in put.fna"]
CLI_SWITCHES = {"--read-only"}  # the `run` options that take no value


@dataclass
class Cli:
    options: dict[str, list[str]]  # each option's values, in order
    image: str
    argv: list[str]

    def one(self, option: str) -> str:
        values = self.options.get(option, [])
        assert len(values) == 1, f"{option} given {len(values)} times: {values}"
        return values[0]


def _cli(words: list[str]) -> Cli:
    assert words[:2] == ["podman", "run"] and "--rm" not in words  # the job removes it once its exit code is read
    options: dict[str, list[str]] = defaultdict(list)
    index = 2
    while words[index].startswith("--"):
        if words[index] in CLI_SWITCHES:
            options[words[index]].append("")
            index += 1
        else:
            options[words[index]].append(words[index + 1])
            index += 2
    return Cli(dict(options), words[index], words[index + 1 :])


def _split(values: list[str], separator: str) -> dict[str, str]:
    """["HOME=/w", …] → {"HOME": "/w", …}; a value without the separator maps to ""."""
    pairs = (value.partition(separator) for value in values)
    return {name: rest for name, _, rest in pairs}


def _both(spec: JobSpec) -> tuple[dict[str, Any], Cli]:
    return container_options(spec), _cli(container_command("podman", spec)[0])


@pytest.fixture
def spec(tmp_path: Path) -> JobSpec:
    return job_spec(tmp_path, ARGV, image=IMAGE, memory_mb=300, cpus=2, env={"TOOL_OPTION": "a b"})


def test_memory_limit_with_no_swap_beyond_it(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["mem_limit"] == docker_py["memswap_limit"] == "300m"
    assert cli.one("--memory") == cli.one("--memory-swap") == "300m"


def test_cpu_and_process_count_limits(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["nano_cpus"] == 2_000_000_000 and float(cli.one("--cpus")) == 2
    assert docker_py["pids_limit"] > 0 and int(cli.one("--pids-limit")) == docker_py["pids_limit"]


def test_read_only_root_with_a_size_capped_tmp(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["read_only"] is True and "--read-only" in cli.options
    cli_tmpfs = _split(cli.options["--tmpfs"], ":")
    assert docker_py["tmpfs"] == cli_tmpfs  # the same scratch mounts, with the same options
    assert "size=1g" in cli_tmpfs["/tmp"].split(",")  # the tool cannot fill the node's memory through /tmp


def test_no_capabilities_and_no_privilege_escalation(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["cap_drop"] == cli.options["--cap-drop"] == ["ALL"]
    assert "no-new-privileges" in docker_py["security_opt"] and "no-new-privileges" in cli.options["--security-opt"]


@pytest.mark.parametrize(("network", "mode"), [(False, "none"), (True, "bridge")])
def test_network_only_when_the_tool_declares_it(tmp_path: Path, network: bool, mode: str) -> None:
    docker_py, cli = _both(job_spec(tmp_path, ARGV, image=IMAGE, network=network))
    assert docker_py["network_mode"] == cli.one("--network") == mode


def test_runs_as_the_workers_user_in_the_working_directory_with_the_same_environment(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["user"] == cli.one("--user") == f"{os.getuid()}:{os.getgid()}"
    assert docker_py["working_dir"] == cli.one("--workdir") == str(spec.workdir)
    cli_env = _split(cli.options["--env"], "=")
    assert docker_py["environment"] == cli_env
    assert cli_env["TOOL_OPTION"] == "a b" and cli_env["OMP_NUM_THREADS"] == "2"


def test_inputs_are_read_only_and_the_working_directory_writable_at_their_host_paths(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    cli_mounts = {}
    for value in cli.options["--volume"]:
        host_path, container_path, mode = value.split(":")
        cli_mounts[host_path] = {"bind": container_path, "mode": mode}
    inputs, workdir = str(spec.inputs_dir), str(spec.workdir)
    assert docker_py["volumes"][inputs] == cli_mounts[inputs] == {"bind": inputs, "mode": "ro"}
    assert docker_py["volumes"][workdir] == cli_mounts[workdir] == {"bind": workdir, "mode": "rw"}
    # both bind the usage file, where PID 1 writes what the tool used
    usage = str(spec.job_dir / "usage")
    assert docker_py["volumes"][usage] == cli_mounts[usage] == {"bind": USAGE_IN_CONTAINER, "mode": "rw"}
    # the one difference: only docker-py mounts the log files, for its shells' redirection; under
    # Slurm the CLI's output is the job's, which sbatch already writes to those files
    assert set(docker_py["volumes"]) - set(cli_mounts) == {str(spec.stdout_path), str(spec.stderr_path)}
    assert set(cli_mounts) == {inputs, workdir, usage}


def test_both_run_the_tools_argv_in_its_image(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert docker_py["image"] == cli.image == IMAGE
    # under the same shells (the tool is neither PID 1 nor its child); only docker-py's send the
    # tool's output to the log files, which are the job's own output under Slurm
    logs = {"stdout": STDOUT_IN_CONTAINER, "stderr": STDERR_IN_CONTAINER}
    assert docker_py["command"] == in_container(ARGV, **logs, usage=USAGE_IN_CONTAINER)
    assert cli.argv == in_container(ARGV, usage=USAGE_IN_CONTAINER)
    assert docker_py["name"] == cli.one("--name") == spec.name
    assert docker_py["labels"] == _split(cli.options["--label"], "=")


def test_a_tool_without_an_image_cannot_run_in_a_container(tmp_path: Path) -> None:
    spec = job_spec(tmp_path, ARGV)
    with pytest.raises(BackendUnavailable, match="no container image"):
        container_options(spec)
    with pytest.raises(BackendUnavailable, match="no container image"):
        container_command("podman", spec)


def test_gpus_are_a_device_request_of_that_many_and_none_unless_granted(spec: JobSpec) -> None:
    docker_py, cli = _both(spec)
    assert "device_requests" not in docker_py and "--gpus" not in cli.options
    docker_py, cli = _both(replace(spec, gpus=2))
    assert docker_py["device_requests"] == [{"count": 2, "capabilities": [["gpu"]]}]
    assert cli.one("--gpus") == "2"
    # what docker-py sends the engine for it
    host_config = docker.types.HostConfig(version="1.41", device_requests=docker_py["device_requests"])
    assert host_config["DeviceRequests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
