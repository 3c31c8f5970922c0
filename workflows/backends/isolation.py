"""The isolation of a tool's container, defined once and rendered for each way of starting it.

`ContainerRun.for_job(spec)` describes one container run of a job: the tool's image and argv, its
user, working directory and environment, its limits (memory with no swap beyond it, CPUs, process
count), a read-only root filesystem with a size-capped tmpfs for scratch, every capability dropped,
no privilege escalation, no network unless the tool declares it, and the staged inputs mounted
read-only next to the read-write working directory, each at its host path (so the argv the tool
spec built runs unchanged). The tool is the grandchild of the container's PID 1, a shell
(`shells.in_container`): PID 1 loses the signals it has no handler for, and its child may take
itself for a daemon. Two renderers apply the very same description:

- `docker_py_options()`: docker-py `containers.create` options (the container backend);
- `cli_words(runtime)`: a `docker run`/`podman run` command (a Slurm job running the tool's image),
  and `cli_remove_words(runtime)`, which the job runs after it.

Both bind the attempt's usage file (`shells.USAGE_FILE`) at `USAGE_IN_CONTAINER`, where PID 1 writes
what the tool used once it has ended (`shells.usage_report`): the container's cgroup is visible only
from inside, and an engine says nothing of an exited container's CPU or peak memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from calculations.names import is_image_reference
from workflows.backends.base import BackendUnavailable, JobSpec, Mount
from workflows.backends.shells import USAGE_FILE, in_container

LABEL = "org.emgapi.job"  # every container the platform starts carries it, valued with the job's name
STDOUT_IN_CONTAINER = "/emgapi/stdout"
STDERR_IN_CONTAINER = "/emgapi/stderr"
USAGE_IN_CONTAINER = "/emgapi/usage"


def tool_environment(spec: JobSpec) -> dict[str, str]:
    """The environment a tool gets besides PATH, whatever runs it (a TES executor: its own only)."""
    if spec.mounts is not None:
        return dict(spec.env)
    return {"HOME": str(spec.workdir), "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": str(spec.cpus), **spec.env}


class LogFiles(NamedTuple):
    """Host files that receive the tool's stdout and stderr through the `/bin/sh` wrapper."""

    stdout: str
    stderr: str


@dataclass(frozen=True)
class ContainerRun:
    image: str
    argv: tuple[str, ...]
    name: str
    workdir: str | None  # None: the image's own
    user: str  # "uid:gid": files the tool writes belong to the worker's user
    env: tuple[tuple[str, str], ...]
    network: bool
    memory_mb: int  # also the memory+swap limit: no swap beyond it, over it the tool is killed
    cpus: float
    mounts: tuple[Mount, ...]  # the data directories
    labels: tuple[tuple[str, str], ...]
    log_files: LogFiles | None = None
    usage_file: str | None = None  # host file bound at USAGE_IN_CONTAINER: what the tool used
    pids_limit: int = 4096
    read_only_root: bool = True
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,size=1g"),)  # (path, mount options)
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    gpus: int = 0  # asked of the engine as a device request (NVIDIA container toolkit)

    @classmethod
    def for_job(cls, spec: JobSpec) -> ContainerRun:
        if spec.image is None:
            raise BackendUnavailable("the tool declares no container image")
        if not is_image_reference(spec.image):
            # the engine's API puts the name in its URL paths, and a CLI would read `-…` as an option
            raise BackendUnavailable(f"{spec.image[:120]!r} is not a container image reference")
        mounts = [Mount(str(spec.workdir), str(spec.workdir), "rw")]
        if spec.inputs_dir is not None:
            mounts.append(Mount(str(spec.inputs_dir), str(spec.inputs_dir), "ro"))
        if spec.mounts is not None:
            mounts = list(spec.mounts)
        return cls(
            image=spec.image,
            argv=tuple(spec.argv),
            name=spec.name,
            workdir=spec.container_workdir if spec.mounts is not None else str(spec.workdir),
            user=f"{os.getuid()}:{os.getgid()}",
            env=tuple(tool_environment(spec).items()),
            network=spec.network,
            memory_mb=spec.memory_mb,
            cpus=spec.cpus,
            gpus=spec.gpus,
            mounts=tuple(mounts),
            labels=((LABEL, spec.name),),
            log_files=LogFiles(str(spec.stdout_path), str(spec.stderr_path)),
            usage_file=str(spec.job_dir / USAGE_FILE),
            # a TES task that binds /tmp itself gets that, not the scratch tmpfs (two mounts at one path)
            tmpfs=() if any(mount.container_path == "/tmp" for mount in mounts) else (("/tmp", "rw,size=1g"),),
        )

    @property
    def network_mode(self) -> str:
        return "bridge" if self.network else "none"

    @property
    def memory(self) -> str:
        return f"{self.memory_mb}m"

    def docker_py_options(self) -> dict[str, Any]:
        """Keyword arguments of docker-py's `containers.create`."""
        volumes = {mount.host_path: {"bind": mount.container_path, "mode": mount.mode} for mount in self.mounts}
        logs: dict[str, str] = {}
        if self.log_files is not None:
            volumes[self.log_files.stdout] = {"bind": STDOUT_IN_CONTAINER, "mode": "rw"}
            volumes[self.log_files.stderr] = {"bind": STDERR_IN_CONTAINER, "mode": "rw"}
            # (appended to: a TES task's executors run in turn into one pair of log files)
            logs = {"stdout": STDOUT_IN_CONTAINER, "stderr": STDERR_IN_CONTAINER}
        if self.usage_file is not None:
            volumes[self.usage_file] = {"bind": USAGE_IN_CONTAINER, "mode": "rw"}
            logs["usage"] = USAGE_IN_CONTAINER
        return {
            "image": self.image,
            "command": in_container(self.argv, **logs),
            "name": self.name,
            "working_dir": self.workdir,
            "user": self.user,
            "environment": dict(self.env),
            "volumes": volumes,
            "network_mode": self.network_mode,
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "nano_cpus": int(self.cpus * 1_000_000_000),
            "pids_limit": self.pids_limit,
            "read_only": self.read_only_root,
            "tmpfs": dict(self.tmpfs),
            "cap_drop": list(self.cap_drop),
            "security_opt": list(self.security_opt),
            "labels": dict(self.labels),
            # docker-py makes each dict a DeviceRequest: N GPUs of any driver with the "gpu" capability
            **({"device_requests": [{"count": self.gpus, "capabilities": [["gpu"]]}]} if self.gpus else {}),
        }

    def cli_words(self, runtime: str) -> list[str]:
        """`<runtime> run …`: the same container as `docker_py_options`, for a shell script, which
        removes it (`cli_remove_words`) once it has read its exit code. Not `--rm`: the Docker CLI
        then waits for the removal, and Podman before 4.6 answers that wait with 0 whatever the
        container's exit code (containers/podman#18889): a failed tool would read as a success.

        One deliberate difference: `log_files` are not used. This form runs inside a Slurm job,
        which already captures the job's stdout and stderr into those very files (sbatch
        `--output`/`--error`), and the runtime's CLI forwards the container's output to its own;
        so the shells run the tool without redirecting its output, and without the two bind mounts.
        """
        words = [runtime, "run", "--name", self.name, "--user", self.user]
        if self.workdir is not None:
            words += ["--workdir", self.workdir]
        words += ["--network", self.network_mode, "--memory", self.memory, "--memory-swap", self.memory]
        words += ["--cpus", str(self.cpus), "--pids-limit", str(self.pids_limit)]
        if self.gpus:
            words += ["--gpus", str(self.gpus)]
        if self.read_only_root:
            words.append("--read-only")
        for path, options in self.tmpfs:
            words += ["--tmpfs", f"{path}:{options}"]
        for capability in self.cap_drop:
            words += ["--cap-drop", capability]
        for option in self.security_opt:
            words += ["--security-opt", option]
        for name, value in self.env:
            words += ["--env", f"{name}={value}"]
        for name, value in self.labels:
            words += ["--label", f"{name}={value}"]
        for mount in self.mounts:
            words += ["--volume", f"{mount.host_path}:{mount.container_path}:{mount.mode}"]
        if self.usage_file is None:
            return [*words, self.image, *in_container(self.argv)]
        words += ["--volume", f"{self.usage_file}:{USAGE_IN_CONTAINER}:rw"]
        return [*words, self.image, *in_container(self.argv, usage=USAGE_IN_CONTAINER)]

    def cli_remove_words(self, runtime: str) -> list[str]:
        return [runtime, "rm", "--force", self.name]
