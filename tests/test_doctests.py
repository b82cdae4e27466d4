"""Every docstring example in rxkit, rxkit.operators and rxkit.graphs runs and passes (issue 18).

Modules are found by walking the installed packages, so a new module's
examples are run without anyone listing it here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rxkit


def _modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(rxkit.__path__, "rxkit.") if info.name != "rxkit.__main__"
    )


MODULES = _modules()


def test_the_walk_finds_operators_graphs_and_private_modules() -> None:
    for name in ("rxkit.providers._retry", "rxkit.operators._coalesce", "rxkit.graphs.text", "rxkit.sse"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_a_failing_example_fails_the_check() -> None:
    def broken() -> None:
        """
        >>> 1 + 1
        3
        """

    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder().find(broken, "broken", globs={}):
        runner.run(test, out=lambda _: None)
    assert runner.failures == 1
