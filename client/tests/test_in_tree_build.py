"""`pip install ./client` (the README's way) builds in the tree: setuptools leaves a copy of the package
in client/build/lib/. The project's typecheck must not find that copy as a second `emgapi_client`
("Duplicate module named emgapi_client" stopped `./taskw typecheck` and `./taskw test`)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from emgapiv2.config import BASE_DIR


def test_an_in_tree_build_of_the_client_is_not_type_checked_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mypy.config_parser import parse_config_file
    from mypy.find_sources import create_source_list
    from mypy.options import Options

    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    package = tmp_path / "client" / "emgapi_client"
    shutil.copytree(BASE_DIR / "client" / "emgapi_client", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(package, tmp_path / "client" / "build" / "lib" / "emgapi_client")  # what build_py leaves
    monkeypatch.chdir(tmp_path)

    # the files `mypy` (task typecheck) would check, found as its configuration says
    options = Options()
    parse_config_file(options, lambda: None, "pyproject.toml", io.StringIO(), io.StringIO())
    sources = create_source_list([path for path in options.files or [] if Path(path).exists()], options)
    modules = [source.module for source in sources]
    assert "emgapi_client.client" in modules
    assert sorted({m for m in modules if modules.count(m) > 1}) == []
    assert not [source.path for source in sources if "build" in Path(source.path or "").parts]
