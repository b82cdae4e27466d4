"""Structured output: parse what a model writes into a typed value, as it streams.

>>> from pydantic import BaseModel
>>> class City(BaseModel):
...     city: str
...     country: str
>>> parse('Here you go: {city: "Paris", country: \\'France\\',}', City)
City(city='Paris', country='France')

The parser's hot modules (``_shape``, ``_align``, ``_partial``, ``_parser``) are
compiled with mypyc where the install could (see ``setup.py``); both builds
behave the same. ``RXKIT_PURE_PYTHON=1`` in the environment, read when this
package is first imported, makes it use the pure Python sources even where the
compiled modules are installed (tests prove both; mutation testing mutates the
sources). In a source checkout, compiled modules older than their sources
(edited since the last ``pip install -e .``) are passed over for the sources,
with a warning.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path

_HOT = ("_shape", "_align", "_partial", "_parser")  # in the order they import each other


def _stale() -> list[str]:
    """In a source checkout (an editable install), the compiled modules older than their sources: edited since."""
    here = Path(__file__).parent
    if not (here.parent.parent / ".git").exists():  # installed from a wheel: sources and modules are one build
        return []
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return [
        name
        for name in _HOT
        if (here / (name + suffix)).exists()
        and (here / (name + ".py")).stat().st_mtime > (here / (name + suffix)).stat().st_mtime
    ]


_pure = os.environ.get("RXKIT_PURE_PYTHON", "") not in ("", "0")
if not _pure and _stale():
    _pure = True
    warnings.warn(
        f"rxkit.structured: compiled modules older than their sources ({', '.join(_stale())}: edited since the "
        "last `pip install -e .`): using the pure Python sources. Rebuild with `pip install --no-deps -e .`, or set "
        "RXKIT_PURE_PYTHON=1 to use them quietly.",
        RuntimeWarning,
        stacklevel=2,
    )

# Each imported here first: pure (RXKIT_PURE_PYTHON, or stale compiled modules), by the path of its source (an
# extension module next to a .py shadows it), all or none (compiled modules expect compiled peers); else through
# the import system, so that a compiled one gets its own file's __file__ (mypyc's shared library gives a module it
# loads for a compiled peer a __file__ without the package's directory).
for _name in _HOT:
    if _pure:
        _spec = importlib.util.spec_from_file_location(f"{__name__}.{_name}", Path(__file__).with_name(_name + ".py"))
        assert _spec is not None and _spec.loader is not None
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _module
        _spec.loader.exec_module(_module)
        globals()[_name] = _module
    else:
        importlib.import_module(f"{__name__}.{_name}")

from rxkit.structured._format import output_format  # noqa: E402 (after the loop above)
from rxkit.structured._parser import StreamingParser, parse  # noqa: E402
from rxkit.structured._shape import Shape, shape_of  # noqa: E402
from rxkit.structured._strict import strict_json_schema  # noqa: E402

__all__ = ["Shape", "StreamingParser", "output_format", "parse", "shape_of", "strict_json_schema"]
