"""Lint, type-check and public-surface checks, run as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rxkit

ROOT = Path(__file__).resolve().parent.parent
CODE = ["rxkit", "operators", "graphs"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", *CODE, "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted() -> None:
    result = _run("ruff", "format", "--check", *CODE, "tests")
    assert result.returncode == 0, "run `ruff format rxkit operators graphs tests`:\n" + result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    # rxkit/operators and rxkit/graphs link to operators/ and graphs/: mypy sees them by their installed names
    result = _run("mypy", "rxkit")
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names_are_sorted_and_complete() -> None:
    names = rxkit.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n)), "keep __all__ sorted"
    for name in names:
        assert hasattr(rxkit, name), f"rxkit.__all__ names {name!r}, which rxkit lacks"
    public = {n for n in vars(rxkit) if not n.startswith("_") and not isinstance(getattr(rxkit, n), type(rxkit))}
    assert public - set(names) == set(), "public names missing from __all__"


def test_package_ships_py_typed() -> None:
    assert (Path(rxkit.__file__).parent / "py.typed").exists()
