"""The layers of pyproject.toml's import-linter contracts hold, and no two modules import each other.

import-linter reads the package from the file system: ``rxkit/operators`` and
``rxkit/graphs`` are links to ``operators/`` and ``graphs/`` (installed there
by a package-dir mapping), so ``lint-imports`` in the repository sees what a
user imports. The tests that break a rule on purpose do it in a copy.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _installed_layout(into: Path) -> Path:
    """A copy of the package as installed: rxkit/ with operators/ and graphs/ inside it (the links followed)."""
    shutil.copytree(ROOT / "rxkit", into / "rxkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _installed_layout(tmp_path_factory.mktemp("installed"))


def _lint(layout: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports CONFIG`` run in ``layout``, which is first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(layout)}
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, str(config), "--no-cache"],
        cwd=layout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_hold() -> None:
    """What a developer runs: ``lint-imports`` in the repository."""
    result = _lint(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout, result.stdout


def test_a_broken_layer_is_reported(layout: Path, tmp_path: Path) -> None:
    """The check can fail: an operator that imports a graph breaks a contract by name."""
    broken = _installed_layout(tmp_path / "broken")
    module = broken / "rxkit" / "operators" / "_coalesce.py"
    module.write_text(module.read_text() + "\nimport rxkit.graphs.text  # noqa\n")
    result = _lint(broken, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "Operators never import graphs or faces" in result.stdout
    assert "rxkit.operators._coalesce -> rxkit.graphs.text" in result.stdout


_CYCLES = """
import json, sys
import grimp

graph = grimp.build_graph("rxkit", cache_dir=None)
assert "rxkit.operators._coalesce" in graph.modules, "rxkit.operators is missing from the graph"
index, low, stack, on_stack, found = {}, {}, [], set(), []

def visit(start):  # Tarjan's strongly connected components, iterative
    work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
    index[start] = low[start] = len(index)
    stack.append(start)
    on_stack.add(start)
    while work:
        node, children = work[-1]
        child = next(children, None)
        if child is not None:
            if child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

for module in sorted(graph.modules):
    if module not in index:
        visit(module)
json.dump(found, sys.stdout)
"""


def _cycles(layout: Path) -> list[list[str]]:
    """Every import cycle between two or more modules of the installed layout."""
    env = {**os.environ, "PYTHONPATH": str(layout)}
    result = subprocess.run(
        [sys.executable, "-c", _CYCLES], cwd=layout, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    cycles: list[list[str]] = json.loads(result.stdout)
    return cycles


def test_no_import_cycles(layout: Path) -> None:
    assert _cycles(layout) == []


def test_a_cycle_is_found(tmp_path: Path) -> None:
    broken = _installed_layout(tmp_path / "cyclic")
    module = broken / "rxkit" / "sse.py"
    module.write_text(module.read_text() + "\nimport rxkit.validation  # noqa\n")
    validation = broken / "rxkit" / "validation.py"
    validation.write_text(validation.read_text() + "\nimport rxkit.sse  # noqa\n")
    assert ["rxkit.sse", "rxkit.validation"] in _cycles(broken)


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] in ("operators", "graphs"):
        parts.insert(0, "rxkit")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private_reaches() -> list[str]:
    """Imports of another package's private module, or of a private name from another module."""
    found = []
    for folder in ("rxkit", "operators", "graphs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            importer = _module_name(path)
            package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("rxkit"):
                    continue
                module = node.module or ""
                segments = module.split(".")
                for i, segment in enumerate(segments):
                    owner = ".".join(segments[:i])
                    if segment.startswith("_") and not (package == owner or package.startswith(owner + ".")):
                        found.append(f"{importer}: imports {module}, private to {owner}")
                for alias in node.names:
                    if alias.name.startswith("_") and f"{module}.{alias.name}" != importer:
                        target = f"{module}.{alias.name}"
                        is_module = any((ROOT / p).exists() for p in _paths_of(target))
                        if not (is_module and (package == module or package.startswith(module + "."))):
                            found.append(f"{importer}: imports private {alias.name} from {module}")
    return found


def _paths_of(module: str) -> list[str]:
    parts = module.split(".")
    if parts[1:2] and parts[1] in ("operators", "graphs"):
        parts = parts[1:]
    base = "/".join(parts)
    return [base + ".py", base + "/__init__.py"]


def test_no_module_reaches_into_another_packages_private_names() -> None:
    assert _private_reaches() == []
