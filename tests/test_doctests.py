"""Every docstring example in rxkit, rxkit.operators and rxkit.graphs runs and passes (issue 18).

Modules are found by walking the installed packages, so a new module's
examples are run without anyone listing it here.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.machinery
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

import rxkit


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(rxkit.__path__, "rxkit.")
        if info.name != "rxkit.__main__" and not info.name.endswith("__mypyc")  # mypyc's shared library
    )


MODULES = _modules()


def test_the_walk_finds_operators_graphs_and_private_modules() -> None:
    for name in ("rxkit.providers._retry", "rxkit.operators._coalesce", "rxkit.graphs.text", "rxkit.sse"):
        assert name in MODULES


def _source_examples(module: ModuleType) -> list[doctest.DocTest]:
    """The examples of a mypyc-compiled module's source, run against the compiled module.

    doctest finds no examples in a compiled module (its functions are builtins), so they are read from the .py
    beside it, loaded under a name of its own, and run with the compiled module's globals: the examples pin the
    compiled code's behaviour as they do the source's.
    """
    source = Path(module.__file__ or "").name.split(".")[0] + ".py"
    spec = importlib.util.spec_from_file_location(module.__name__, Path(module.__file__ or "").with_name(source))
    assert spec is not None and spec.loader is not None
    pure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pure)
    # The finder takes an object as the module's own when sys.modules names that module: the source's, while it looks.
    sys.modules[module.__name__] = pure
    try:
        return doctest.DocTestFinder().find(pure, module.__name__, globs=vars(module).copy())
    finally:
        sys.modules[module.__name__] = module


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    if (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        tests = _source_examples(module)
        for test in tests:
            runner.run(test)
        assert sum(len(t.examples) for t in tests) > 0 or name.endswith("_partial")  # (_partial has none)
        result = runner.summarize(verbose=False)
    else:
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
