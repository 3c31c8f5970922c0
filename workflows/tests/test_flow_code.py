"""A deployed flow's code: the version `task deploy-flow` records, and the worker's fresh load of it."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflows.flow_code import FlowCodeError, check_loadable, file_version, is_hashed, load_flow, load_module

SOURCE = """from prefect import flow


@flow(name="answer")
async def answer() -> int:
    return {value}
"""


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """An ops flow in a package of its own on sys.path: (its file, its module path entrypoint)."""
    package = f"flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    file = tmp_path / package / "answers.py"
    file.write_text(SOURCE.format(value=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield file, f"{package}.answers.answer"
    for name in [name for name in sys.modules if name.startswith(package)]:
        del sys.modules[name]


def test_an_edited_file_deployed_again_loads_its_new_code_at_once(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    first = file_version(entrypoint)
    assert is_hashed(first) and first.startswith("sha256:")
    old = load_flow(entrypoint, first)
    assert asyncio.run(old.fn()) == 1

    # the same size within the same second: a cached .pyc would look fresh, the module is cached
    file.write_text(SOURCE.format(value=2))
    second = file_version(entrypoint)
    assert second != first
    new = load_flow(entrypoint, second)
    assert asyncio.run(new.fn()) == 2
    assert asyncio.run(old.fn()) == 1, "a run of the old version keeps its own code"
    assert sys.modules[entrypoint.rpartition(".")[0]].answer is new


def test_a_file_that_differs_from_the_deployed_one_is_refused_in_one_line(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    deployed = file_version(entrypoint)
    file.write_text(SOURCE.format(value=3))
    for check in (load_flow, check_loadable):
        with pytest.raises(FlowCodeError, match="differs from the deployed one: deploy it again") as refused:
            check(entrypoint, deployed)
        assert "\n" not in str(refused.value)


def test_a_deleted_file_is_refused(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    deployed = file_version(entrypoint)
    load_flow(entrypoint, deployed)
    file.unlink()
    with pytest.raises(FlowCodeError, match="has no file on this host"):
        load_flow(entrypoint, deployed)
    with pytest.raises(FlowCodeError, match="has no file on this host"):
        check_loadable(entrypoint, deployed)


def test_a_syntax_error_names_its_line_and_leaves_the_loaded_version_in_place(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    loaded = load_flow(entrypoint, file_version(entrypoint))
    file.write_text("from prefect import flow\n\nasync def answer(:\n")
    with pytest.raises(FlowCodeError, match=r"answers\.py, line 3: SyntaxError") as refused:
        load_flow(entrypoint, file_version(entrypoint))
    assert "\n" not in str(refused.value)
    assert sys.modules[entrypoint.rpartition(".")[0]].answer is loaded


def test_an_import_error_and_a_missing_function_are_one_line(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    file.write_text("import no_such_package_here\n")
    with pytest.raises(FlowCodeError, match="raised on import: ModuleNotFoundError: No module named"):
        load_flow(entrypoint, file_version(entrypoint))
    file.write_text("VALUE = 1\n")
    with pytest.raises(FlowCodeError, match="has no flow 'answer'"):
        load_flow(entrypoint, file_version(entrypoint))


def test_deploy_reads_the_module_afresh_with_the_version_of_the_bytes_it_ran(flow_file: tuple[Path, str]) -> None:
    file, entrypoint = flow_file
    module_name = entrypoint.rpartition(".")[0]
    module, version = load_module(module_name)
    assert version == file_version(entrypoint) and asyncio.run(module.answer.fn()) == 1
    file.write_text(SOURCE.format(value=4))
    module, version = load_module(module_name)
    assert version == file_version(entrypoint) and asyncio.run(module.answer.fn()) == 4


def test_a_flow_not_deployed_by_hash_is_imported_as_the_workers_own_code(flow_file: tuple[Path, str]) -> None:
    _, entrypoint = flow_file
    assert not is_hashed("3f2a9c")  # Prefect's own version: an md5 of the file
    first = load_flow(entrypoint, "3f2a9c")
    assert load_flow(entrypoint, None) is first  # imported once: the platform's flows change with a restart
    check_loadable(entrypoint, "3f2a9c")
    with pytest.raises(FlowCodeError, match="no entrypoint"):
        check_loadable(None, None)
