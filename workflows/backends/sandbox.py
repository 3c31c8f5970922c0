"""The local backend's sandbox: each tool runs under bubblewrap (`bwrap`), seeing only what it needs.

- The system directories a program needs (`/usr` and its merged-/usr links, `/etc`) read-only;
  its own attempt's working directory read-write and its staged inputs read-only. Nothing else of
  the host: not the platform's data directory, secrets, database or other calculations.
- A private `/tmp`, `/proc` and `/dev`; its own pid, IPC, UTS and cgroup namespaces; no network
  (a network namespace with only loopback) unless the tool declares it needs one.
- It dies with the worker (`--die-with-parent`).
- It is the child of a shell that waits for it (`shells.run_as_child`), never of bwrap's init,
  which is PID 1 of the sandbox: a tool whose parent is PID 1 may take itself for a daemon and
  send its last words to syslog (HMMER does).
- When the worker runs as root, the tool does not: bwrap (which needs root to build the sandbox
  without a user namespace) hands over to `setpriv`, which switches to an unprivileged user
  (`EMGAPI_EXECUTION__SANDBOX_USER`) with no capabilities and no way to gain any.

Where bwrap is missing the local backend refuses to run tools, unless the deployment explicitly
allows unsandboxed tools (`EMGAPI_EXECUTION__ALLOW_UNSANDBOXED=true`).
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from workflows.backends.base import BackendUnavailable, JobSpec
from workflows.backends.shells import run_as_child

SYSTEM_DIRECTORIES = ("/usr", "/etc")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    setpriv: str | None  # set when the worker is root: the tool then runs as `uid`:`gid`
    uid: int
    gid: int

    @classmethod
    def from_settings(cls, user: str, *, allow_unsandboxed: bool) -> Sandbox | None:
        """The sandbox to run tools in; None only where running unsandboxed is explicitly allowed."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            if allow_unsandboxed:
                return None
            raise BackendUnavailable(
                "bubblewrap (bwrap) is not installed, and the local backend runs tools only sandboxed: "
                "install it (apt-get install bubblewrap), or set EMGAPI_EXECUTION__ALLOW_UNSANDBOXED=true to "
                "run tools with the worker's own rights"
            )
        if os.geteuid() != 0:
            return cls(bwrap, None, os.geteuid(), os.getegid())
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise BackendUnavailable("setpriv (util-linux) is missing: a root worker cannot drop privileges")
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise BackendUnavailable(
                f"the sandbox user {user!r} does not exist (EMGAPI_EXECUTION__SANDBOX_USER)"
            ) from None
        if account.pw_uid == 0:
            raise BackendUnavailable(f"the sandbox user {user!r} is root: choose an unprivileged one")
        return cls(bwrap, setpriv, account.pw_uid, account.pw_gid)

    def prepare(self, spec: JobSpec) -> None:
        """Give the tool's user its working directory and its (copied) inputs."""
        if self.setpriv is None:
            return  # the worker's own user runs the tool: it owns them already
        for directory in (spec.workdir, spec.inputs_dir):
            if directory is None or not directory.exists():
                continue
            for path in (directory, *directory.rglob("*")):
                os.lchown(path, self.uid, self.gid)

    def wrap(self, spec: JobSpec, argv: list[str]) -> list[str]:
        words = [self.bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
        words += ["--unshare-cgroup-try"]
        if not spec.network:
            words += ["--unshare-net"]
        if self.setpriv is None:
            words += ["--unshare-user"]  # unprivileged: bwrap builds the sandbox in a user namespace
        for directory in SYSTEM_DIRECTORIES:
            words += ["--ro-bind", directory, directory]
        for link in MERGED_USR_LINKS:
            path = Path(link)
            if path.is_symlink():
                words += ["--symlink", os.readlink(path), link]
            elif path.is_dir():
                words += ["--ro-bind", link, link]
        # writable by the tool: /tmp, and /dev/shm (POSIX shared memory, multiprocessing's locks)
        words += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
        words += ["--perms", "1777", "--tmpfs", "/tmp"]
        mounts = [("--bind", spec.workdir)] + ([("--ro-bind", spec.inputs_dir)] if spec.inputs_dir else [])
        # the directories above them, made traversable inside (bwrap would copy the host's 0700)
        above = sorted({str(parent) for _, path in mounts for parent in path.parents if str(parent) != "/"}, key=len)
        for directory in above:
            words += ["--perms", "0755", "--dir", directory]
        for option, path in mounts:
            words += [option, str(path), str(path)]
        words += ["--chdir", str(spec.workdir), "--"]
        if self.setpriv is not None:
            words += [self.setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
            words += ["--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"]
        return [*words, *run_as_child(argv)]
