"""Optional dependencies: the one place that says which extra to install for a missing package.

rxkit's core needs none of them; a feature that does imports its package through
:func:`require_extra` (or inside :func:`extra_imports`), so that a missing one is a
:class:`~rxkit.errors.MissingExtraError` naming the extra, not a bare
``ModuleNotFoundError``::

    np = require_extra("numpy", "voice", "rxkit.audio.resample")
    with extra_imports("rxkit.audio.wav_source"):      # extra looked up in EXTRAS
        from rxkit.audio import convert

>>> str(missing_extra(ModuleNotFoundError("no numpy", name="numpy.linalg"), "resample"))
"resample needs 'numpy', which is not installed: pip install 'rxkit[voice]'"
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from rxkit.errors import MissingExtraError

__all__ = ["EXTRAS", "extra_imports", "missing_extra", "require_extra"]

EXTRAS: dict[str, str] = {
    "numpy": "voice",
    "sounddevice": "voice",
    "webrtcvad": "voice",
    "vosk": "voice",
    "pyttsx3": "voice",
    "pocketsphinx": "voice",
    "faster_whisper": "whisper",
    "matplotlib": "notebook",
    "pandas": "notebook",
    "IPython": "notebook",
    "ipywidgets": "notebook",
    "nbclient": "notebook",
    "nbformat": "notebook",
    "llama_cpp": "local",
    "redis": "redis",
    "mcp": "mcp",
    "prometheus_client": "metrics",
    "opentelemetry": "metrics",
    "onnxruntime": "turn",
}
"""Top-level package -> the extra (``pyproject.toml``'s optional dependencies) that installs it."""


def missing_extra(exc: ImportError, needed_for: str, extra: str | None = None) -> MissingExtraError | None:
    """The error to raise for ``exc`` if it is a missing optional package (``extra``, else looked up
    in :data:`EXTRAS`), else None (a real import bug stays itself)."""
    package = (getattr(exc, "name", None) or "").split(".")[0]
    extra = extra or EXTRAS.get(package)
    if not isinstance(exc, ModuleNotFoundError) or not package or extra is None:
        return None
    return MissingExtraError(
        f"{needed_for} needs {package!r}, which is not installed: pip install 'rxkit[{extra}]'",
        package=package,
        extra=extra,
    )


def require_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``; if it (or a package it needs) is missing, a MissingExtraError naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, needed_for, extra)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def extra_imports(needed_for: str) -> Iterator[None]:
    """Imports in the block that fail for a package of :data:`EXTRAS` raise MissingExtraError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, needed_for)
        if error is None:
            raise
        raise error from exc
