"""A deployed flow's code: where its file is, the version `task deploy-flow` records for it (the
file's sha256), and loading it afresh on the worker.

An ops engineer's flow is deployed with the version `sha256:<hex>` of its file. The worker loads
such a flow from the bytes it hashed, as a new module each time the deployment changes (never the
module Python cached in `sys.modules`, nor a `.pyc` that an edit within the same second leaves
looking fresh), and refuses to run it when the file on its host is gone or differs from the one
deployed. A deployment with any other version (the platform's own flows, or one made by Prefect's
own tools) is the worker's own code: imported once, upgraded by a restart.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

HASH_PREFIX = "sha256:"


class FlowCodeError(Exception):
    """A flow whose code cannot be loaded on this host; the message is one line saying why."""


def is_hashed(version: str | None) -> bool:
    """True when the version is a file's hash, as `task deploy-flow` records it for an ops flow."""
    return bool(version) and str(version).startswith(HASH_PREFIX)


def code_version(content: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(content).hexdigest()


def _split(entrypoint: str) -> tuple[str | None, str, str]:
    """(file path or None, module name, attribute) of `path/to/file.py:flow`, `module:flow` or `module.flow`."""
    if ".py:" in entrypoint:
        path, attribute = entrypoint.rsplit(":", 1)
        return path, f"_emgapi_flow_{hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]}", attribute
    separator = ":" if ":" in entrypoint else "."
    if separator not in entrypoint:
        raise FlowCodeError(f"entrypoint {entrypoint!r} names no flow (module.function or file.py:function)")
    module, attribute = entrypoint.rsplit(separator, 1)
    return None, module, attribute


def module_file(module: str) -> Path:
    """The file of a module, found without importing it (its parent packages are imported)."""
    parent, _, leaf = module.rpartition(".")
    try:
        search = importlib.import_module(parent).__path__ if parent else None
    except (ImportError, AttributeError) as exc:
        raise FlowCodeError(f"module {module!r} cannot be found: {type(exc).__name__}: {exc}") from None
    spec = PathFinder.find_spec(leaf, search)
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        raise FlowCodeError(f"module {module!r} has no file on this host")
    return Path(spec.origin)


def entrypoint_file(entrypoint: str) -> Path:
    """The file an entrypoint's flow is defined in."""
    path, module, _ = _split(entrypoint)
    return Path(path) if path is not None else module_file(module)


def load_module(module: str) -> tuple[ModuleType, str]:
    """The module run afresh from its file (as `task deploy-flow` reads an ops flow), and the
    version of the bytes it ran."""
    file = module_file(module)
    content = _read_file(file)
    return _execute(module, file, content), code_version(content)


def _read(entrypoint: str) -> tuple[Path, bytes]:
    file = entrypoint_file(entrypoint)
    return file, _read_file(file)


def _read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise FlowCodeError(f"its file {file} cannot be read: {exc.strerror or exc}") from None


def file_version(entrypoint: str) -> str:
    """The version (`sha256:<hex>`) of the entrypoint's file as it is on this host now."""
    return code_version(_read(entrypoint)[1])


def check_loadable(entrypoint: str | None, version: str | None) -> None:
    """Raise FlowCodeError unless the entrypoint's file is on this host, and, for a hashed version,
    holds the bytes that were deployed."""
    if not entrypoint:
        raise FlowCodeError("the deployment has no entrypoint")
    file, content = _read(entrypoint)
    if is_hashed(version) and code_version(content) != version:
        raise FlowCodeError(f"{file} on this host differs from the deployed one: deploy it again (task deploy-flow)")


def load_flow(entrypoint: str | None, version: str | None) -> Flow[Any, Any]:
    """The deployed flow: for a hashed version, read afresh from its file (which must hold the
    deployed bytes); otherwise imported as any module is."""
    if not entrypoint:
        raise FlowCodeError("the deployment has no entrypoint")
    if not is_hashed(version):
        try:
            return load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        except Exception as exc:
            raise FlowCodeError(_one_line(exc)) from None
    file, content = _read(entrypoint)
    if code_version(content) != version:
        raise FlowCodeError(f"{file} on this host differs from the deployed one: deploy it again (task deploy-flow)")
    _, module_name, attribute = _split(entrypoint)
    module = _execute(module_name, file, content)
    found = getattr(module, attribute, None)
    if not isinstance(found, Flow):
        raise FlowCodeError(f"{file} has no flow {attribute!r} (a function decorated with @flow)")
    return found


def _execute(module_name: str, file: Path, content: bytes) -> ModuleType:
    """A new module run from `content`: it replaces any earlier version in `sys.modules` (a flow run
    already running keeps the functions, and the globals, of its own version)."""
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None:
        raise FlowCodeError(f"{file} cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(content, str(file), "exec")
    except SyntaxError as exc:
        raise FlowCodeError(f"{file}, line {exc.lineno}: SyntaxError: {exc.msg}") from None
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # while it runs too: dataclasses and pydantic look a module up there
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise FlowCodeError(f"{file} raised on import: {_one_line(exc)}") from None
    parent, _, leaf = module_name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], leaf, module)
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
