"""Dependencies point one way: `workflows` uses `calculations`, never the reverse. The Django app
must be readable, testable and reusable without Prefect."""

from __future__ import annotations

import ast
from pathlib import Path

import calculations

FORBIDDEN = ("workflows", "prefect")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_the_calculations_app_imports_neither_workflows_nor_prefect() -> None:
    root = Path(calculations.__file__).parent
    offenders = [
        f"{path.relative_to(root.parent)}: {name}"
        for path in sorted(root.rglob("*.py"))
        if "tests" not in path.relative_to(root).parts
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []
