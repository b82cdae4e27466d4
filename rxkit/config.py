"""Configuration files: YAML, TOML or JSON (by the file's suffix), read into plain data.

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "voice.json"
>>> _ = path.write_text(json.dumps({"barge_in": {"headphones": True}}))
>>> read_config_file(path, "voice settings")
{'barge_in': {'headphones': True}}

What the data means is the caller's business (provider specs, graph
settings); a file that cannot be read or parsed is a
:class:`~rxkit.errors.ConfigError` saying which file and what kind.
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

            return yaml.safe_load(text)
        if p.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"cannot parse {what} {p}: {exc}") from None
