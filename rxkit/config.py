"""Configuration files: YAML, TOML or JSON (by the file's suffix), read into plain data.

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "voice.json"
>>> _ = path.write_text(json.dumps({"barge_in": {"headphones": True}}))
>>> read_config_file(path, "voice settings")
{'barge_in': {'headphones': True}}

What the data means is the caller's business (provider specs, graph
settings); a file that cannot be read or parsed is a
:class:`~rxkit.errors.ConfigError` saying which file and what kind, and
for a parse error the line, the column and the problem, on one line. It
never quotes the file's content: the offending line may hold a key.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from rxkit.errors import ConfigError

__all__ = ["read_config_file"]


def read_config_file(path: str | os.PathLike[str], what: str = "config") -> Any:
    """The data in ``path``: YAML for ``.yaml``/``.yml``, TOML for ``.toml``, else JSON.

    ``what`` names the file's kind in errors (``"provider config"``).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"cannot parse {what} {p}: {_yaml_problem(exc)}") from None
        if p.suffix == ".toml":
            return tomllib.loads(text)  # its messages name the line and column, never the content
        return json.loads(text)
    except json.JSONDecodeError as exc:  # its str() is the same, without the content
        raise ConfigError(
            f"cannot parse {what} {p}: not valid JSON at {_at(exc.lineno, exc.colno)}: {exc.msg}"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"cannot parse {what} {p}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _at(line: int, column: int) -> str:
    return f"line {line}, column {column}"


def _yaml_problem(exc: Any) -> str:
    """Where and what, from PyYAML's marks: its str() quotes the offending line, which may hold a key."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    where = f" at {_at(mark.line + 1, mark.column + 1)}" if mark is not None else ""
    text = f"not valid YAML{where}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        text += f" ({context}" + (
            f" from {_at(context_mark.line + 1, context_mark.column + 1)})" if context_mark else ")"
        )
    return text
