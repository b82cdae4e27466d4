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
sources).
"""

import os

if os.environ.get("RXKIT_PURE_PYTHON"):
    import importlib.util
    import sys
    from pathlib import Path

    # An extension module next to a .py file shadows it, so load each source by its path, under its own name
    # (in import order: each imports the ones before it from sys.modules), all or none: compiled modules
    # expect compiled peers.
    for _name in ("_shape", "_align", "_partial", "_parser"):
        _spec = importlib.util.spec_from_file_location(f"{__name__}.{_name}", Path(__file__).with_name(_name + ".py"))
        assert _spec is not None and _spec.loader is not None
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _module
        _spec.loader.exec_module(_module)
        globals()[_name] = _module
    del _name, _spec, _module

from rxkit.structured._format import output_format
from rxkit.structured._parser import StreamingParser, parse
from rxkit.structured._shape import Shape, shape_of
from rxkit.structured._strict import strict_json_schema

__all__ = ["Shape", "StreamingParser", "output_format", "parse", "shape_of", "strict_json_schema"]
