"""The structured parser's two builds: mypyc-compiled where the install could, pure Python on request.

setup.py compiles ``rxkit.structured``'s hot modules with mypyc when it finds a
C compiler (and ``RXKIT_NO_MYPYC`` is unset). This suite runs on whatever the
install gave, so these tests prove the rest: that an install on a machine with
a compiler really uses the compiled modules (the fast path is live in CI), and
that the same structured tests and doctests pass on the pure modules, forced
with ``RXKIT_PURE_PYTHON=1``.
"""

from __future__ import annotations

import importlib.machinery
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import rxkit.structured

HOT = ("_shape", "_align", "_partial", "_parser")
ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _set(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0")  # as setup.py and rxkit.structured read them


def _files() -> dict[str, str]:
    return {name: getattr(rxkit.structured, name).__file__ for name in HOT}


def _why_not_compiled() -> str | None:
    """Why this environment would install pure Python (as setup.py decides), or None when it compiles."""
    if _set("RXKIT_NO_MYPYC"):
        return "RXKIT_NO_MYPYC is set: the install was pure Python on purpose"
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        return f"no C compiler here ({compiler!r} not found): the install is pure Python"
    header = Path(sysconfig.get_paths()["include"], "Python.h")
    if not header.exists():
        return f"no Python headers here ({header} missing): the install is pure Python"
    return None


@pytest.mark.skipif(_set("RXKIT_PURE_PYTHON"), reason="RXKIT_PURE_PYTHON is set: pure on request")
def test_an_install_with_a_compiler_uses_the_compiled_modules() -> None:
    reason = _why_not_compiled()
    if reason is not None:
        pytest.skip(reason)
    files = _files()
    pure = {name: path for name, path in files.items() if not path.endswith(EXTENSIONS)}
    assert not pure, (
        f"a C compiler is here but these modules are pure Python: {pure}. Reinstall (`pip install -e .`, or .ci/setup"
        " after touching pyproject.toml) and read setup.py's 'rxkit setup:' lines in pip's output (-v)"
    )
    for name, path in files.items():  # each is its own file, in the package (not one a compiled peer named)
        assert Path(path).parent == Path(rxkit.structured.__file__).parent
        assert Path(path).name.startswith(name + ".")
    assert "rxkit.structured._compiled__mypyc" in sys.modules


def test_the_pure_switch_loads_the_sources_and_the_structured_tests_pass_on_them() -> None:
    if _set("RXKIT_PURE_PYTHON"):
        assert all(path.endswith(".py") for path in _files().values()), _files()
        return  # this is the pure run started below
    env = dict(os.environ, RXKIT_PURE_PYTHON="1")
    probe = f"import rxkit.structured as s; print(*(getattr(s, n).__file__ for n in {HOT!r}))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert [Path(p).name for p in out.stdout.split()] == [name + ".py" for name in HOT]
    # The whole structured suite and the doctests of rxkit.structured, on the pure modules (a few seconds).
    tests = ["tests/structured", "tests/test_doctests.py", "-k", "structured"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_shape_copy_has_every_slot() -> None:
    """_copy names each slot one by one (a native class has no __slots__ to loop over): one left out fails here."""
    import ast

    from pydantic import BaseModel

    from rxkit.structured._shape import Shape, _copy, shape_of

    class Model(BaseModel):
        name: str
        size: int = 1

    source = ast.parse((ROOT / "rxkit" / "structured" / "_shape.py").read_text("utf-8"))
    shape_class = next(n for n in source.body if isinstance(n, ast.ClassDef) and n.name == "Shape")
    slots = next(
        ast.literal_eval(s.value)
        for s in shape_class.body
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) and s.targets[0].id == "__slots__"
    )
    shape = shape_of(Model)
    shape.adapter()  # sets _adapter
    shape.item, shape.choices, shape.arms = Shape("int"), {"a": 1}, [Shape("str")]
    shape.nullable = shape.streams = True  # (a fresh Shape("model") has neither)
    twin = _copy(shape)
    fresh = Shape(shape.kind, shape.tp)
    for slot in slots:
        assert getattr(twin, slot) is getattr(shape, slot), slot
        assert getattr(fresh, slot) is not getattr(shape, slot) or slot in ("kind", "tp"), slot  # the test can tell


def test_a_parser_beside_a_model_defined_in_a_function_survives_garbage_collection() -> None:
    """pydantic takes a weak reference to each local of a function that defines a model. A compiled parser with a
    weak reference slot its dealloc never cleared (a Generic base) crashed the next collection: no slot now."""
    import gc
    import weakref

    from pydantic import BaseModel

    from rxkit.structured import StreamingParser

    def define() -> type[BaseModel]:
        parser = StreamingParser(dict)
        parser.feed('{"a": 1}')

        class Local(BaseModel):
            x: int

        return Local

    for _ in range(50):
        define()
        gc.collect()
    with pytest.raises(TypeError):  # the same in both builds: no weak references to a parser
        weakref.ref(StreamingParser(dict))
