"""rxkit's build: the metadata is in pyproject.toml; this adds the compiled structured parser.

The structured parser's hot modules (``HOT``) are compiled with mypyc, the way
black and mypy ship, when three things hold: ``RXKIT_NO_MYPYC`` is unset, a C
compiler that can build against this Python's headers is found, and mypyc
(part of mypy) is importable. mypy (with pydantic, for its types) is asked for as a build
requirement only on a machine with a compiler (through ``setup_requires``, which setuptools' PEP 517
backend turns into ``get_requires_for_build_*``), so ``pip install rxkit`` from
an sdist on a machine without one needs no mypy. Whatever goes wrong (mypyc
refuses the code, the C build fails), the install goes on in pure Python, with
a message saying why: a build never fails for want of the compiled modules.
Both builds behave the same; ``RXKIT_PURE_PYTHON=1`` at run time picks the
pure modules even where the compiled ones are installed.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HOT = [
    "rxkit/structured/_shape.py",
    "rxkit/structured/_align.py",
    "rxkit/structured/_partial.py",
    "rxkit/structured/_parser.py",
]
GROUP = "rxkit.structured._compiled"  # mypyc's shared library, inside the package: _compiled__mypyc.*.so
# What mypyc needs at build time: mypy, and pydantic so that it checks the modules against pydantic's real types
# (as CI's mypy run does) rather than Any. pydantic is a dependency of rxkit's anyway.
BUILD_REQUIRES = ["mypy>=1.10", "pydantic>=2.6"]


def say(message: str) -> None:
    print(f"rxkit setup: {message}", file=sys.stderr, flush=True)


def c_compiler() -> str | None:
    """Why no C extension can be built here, or None when a test build against Python.h works."""
    from setuptools._distutils import ccompiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler: Any = ccompiler.new_compiler()
    try:
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w", encoding="utf-8") as f:
                f.write("#include <Python.h>\nint rxkit_probe(void) { return 0; }\n")
            compiler.compile([source], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]])
    except Exception as error:  # noqa: BLE001 (any failure means the same: no compiled modules here)
        return f"no working C compiler ({type(error).__name__}: {str(error).strip()[:200]})"
    return None


def collecting_requirements() -> bool:
    """True while setuptools' PEP 517 backend runs this file to collect build requirements."""
    build_meta = sys.modules.get("setuptools.build_meta")
    import distutils.core

    return build_meta is not None and distutils.core.Distribution is getattr(build_meta, "Distribution", None)


class BuildExtOrPure(build_ext):
    """build_ext that falls back to pure Python when the compiled modules fail to build."""

    extensions: list[Any]

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # noqa: BLE001 (a compiler, link or header error: pure Python it is)
            say(f"building the compiled modules failed ({type(error).__name__}: {error}); installing pure Python")
            for ext in self.extensions:  # never a half-built set: a compiled module needs its compiled peers
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


def command() -> str:
    """The setup command this run is for (``egg_info``, ``dist_info``, ``build_ext``, ``bdist_wheel``...)."""
    return next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")


def compiled() -> dict[str, Any]:
    """The setup() arguments that compile HOT, or none (pure Python), saying why."""
    if os.environ.get("RXKIT_NO_MYPYC", "") not in ("", "0"):
        say("RXKIT_NO_MYPYC is set: pure Python")
        return {}
    if command() in ("egg_info", "dist_info", "sdist"):  # metadata or sources only: nothing to compile
        if collecting_requirements() and c_compiler() is None:
            try:
                import mypyc.build  # noqa: F401
            except ImportError:
                return {"setup_requires": BUILD_REQUIRES}  # the frontend installs it, then runs the build with it
        return {}
    reason = c_compiler()
    if reason is not None:
        say(f"{reason}: installing pure Python")
        return {}
    try:
        from mypyc.build import mypycify
    except ImportError:
        say("mypyc is not importable (install mypy, or build with build isolation): installing pure Python")
        return {}
    try:
        extensions = mypycify(HOT, opt_level="3", group_name=GROUP)
    except (Exception, SystemExit) as error:  # noqa: BLE001 (mypyc exits on a type error it cannot compile past)
        say(f"mypyc failed ({type(error).__name__}: {error}); installing pure Python")
        return {}
    say(f"compiling {len(HOT)} modules with mypyc (RXKIT_NO_MYPYC=1 skips it)")
    return {"ext_modules": extensions, "cmdclass": {"build_ext": BuildExtOrPure}}


setup(**compiled())
