"""Configuration files: one reader for every kind (provider specs, graph settings)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import rxkit.config
from rxkit.config import read_config_file
from rxkit.errors import ConfigError


def test_doctests() -> None:
    assert doctest.testmod(rxkit.config).failed == 0


@pytest.mark.parametrize(
    ("name", "text"),
    [("a.yaml", "x:\n  y: 1\n"), ("a.yml", "x: {y: 1}\n"), ("a.toml", "[x]\ny = 1\n"), ("a.json", '{"x": {"y": 1}}')],
)
def test_the_suffix_picks_the_format(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert read_config_file(tmp_path / name) == {"x": {"y": 1}}


def test_unreadable_and_unparsable_files_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read voice settings .*missing\.toml"):
        read_config_file(tmp_path / "missing.toml", "voice settings")
    (tmp_path / "bad.toml").write_text("[x\n")
    with pytest.raises(ConfigError, match=r"cannot parse voice settings .*bad\.toml"):
        read_config_file(tmp_path / "bad.toml", "voice settings")


SECRET = "correct-horse-battery-staple"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("p.yaml", f"providers:\n  fast:\n    api_key: {SECRET}: x\n", "not valid YAML at line 3, column"),
        ("p.yml", f'fast:\n  api_key: "{SECRET}\n', "(while scanning a quoted scalar from line 2, column 12)"),
        ("p.toml", f'[fast]\napi_key = "{SECRET}\n', "(at line 2, column"),
        ("p.json", f'{{"fast": {{"api_key": "{SECRET}" "model": 1}}}}', "not valid JSON at line 1, column"),
    ],
)
def test_a_parse_error_names_line_column_and_problem_never_the_content(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    """PyYAML's message quotes the offending line (here it holds a key): the error gives where and what."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as bad:
        read_config_file(tmp_path / name, "provider config")
    message = str(bad.value)
    assert message.startswith(f"cannot parse provider config {tmp_path / name}: ")
    assert where in message and "\n" not in message
    assert SECRET not in message and "api_key" not in message
