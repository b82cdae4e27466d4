"""The exception hierarchy matches the tree drawn in rxkit.errors, and errors never carry secrets."""

from __future__ import annotations

import re

import pytest

import rxkit.errors as errors
from rxkit.errors import (
    MalformedEventError,
    ProviderError,
    RxkitError,
    StageError,
    redact,
    register_secret,
)


def drawn_tree() -> dict[str, str | None]:
    """Class name -> parent name, parsed from the module docstring's tree (depth = column / 4)."""
    lines = (errors.__doc__ or "").splitlines()
    root = next(line for line in lines if line.strip() == "RxkitError")
    base = root.index("RxkitError")
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (depth, name)
    for line in lines[lines.index(root) :]:
        m = re.match(r"^[ │├└─]*([A-Z][A-Za-z]+)", line)
        if not m or not line.strip():
            break
        col = m.start(1)
        assert (col - base) % 4 == 0, f"misaligned tree line: {line!r}"
        depth = (col - base) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[m.group(1)] = stack[-1][1] if stack else None
        stack.append((depth, m.group(1)))
    return parents


def test_the_tree_parses() -> None:
    tree = drawn_tree()
    assert tree["RxkitError"] is None
    assert tree["ConfigError"] == "RxkitError"
    assert tree["AuthenticationError"] == "ProviderHTTPError"
    assert tree["StreamInterruptedError"] == "StreamError"
    assert tree["AudioDeviceError"] == "AudioError"
    assert len(tree) >= 30


def test_every_class_in_the_tree_exists_and_derives_as_drawn() -> None:
    for name, parent in drawn_tree().items():
        cls = getattr(errors, name, None)
        assert isinstance(cls, type), f"{name} is drawn in the tree but rxkit.errors lacks it"
        assert name in errors.__all__, f"{name} is missing from rxkit.errors.__all__"
        if parent is None:
            assert cls.__bases__ == (Exception,)
        else:
            assert cls.__bases__ == (getattr(errors, parent),), f"{name} should derive from {parent}"


def test_every_error_class_is_drawn() -> None:
    tree = drawn_tree()
    defined = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, RxkitError)}
    assert defined - set(tree) == set(), "classes missing from the docstring tree"


def test_redact_scrubs_registered_secrets() -> None:
    register_secret("hunter2-my-own-token")
    assert redact("token hunter2-my-own-token in a URL") == "token *** in a URL"
    register_secret("abc")  # too short to register: it would scrub ordinary words
    assert redact("abc") == "abc"
    register_secret(None)


@pytest.mark.parametrize(
    "text",
    [
        "key sk-abcdefgh12345678",
        "key=sk-ant-api03-abcdefghijklmnop",
        "AIzaSyA1234567890abcdefghijklmnop",
        "Authorization: Bearer abc.def-ghi_jkl",
    ],
)
def test_redact_scrubs_key_shaped_strings(text: str) -> None:
    out = redact(text)
    assert "***" in out
    assert not re.search(r"sk-[a-z0-9]{8}|AIza[0-9A-Za-z]{20}|abc\.def", out)


def test_redact_leaves_ordinary_words_alone() -> None:
    for text in ("task-12345678 finished", "risk-assessment-document", "the desk-organizer-v2 model"):
        assert redact(text) == text


def test_errors_redact_their_message_and_text_context() -> None:
    err = MalformedEventError("bad event: sk-abcdefgh12345678", line='{"key": "sk-abcdefgh12345678"}', provider="x")
    assert "sk-abcdefgh" not in str(err) and "sk-abcdefgh" not in err.message
    assert "sk-abcdefgh" not in err.line  # type: ignore[attr-defined]
    assert err.provider == "x"


def test_context_becomes_attributes() -> None:
    err = StageError("failed", stage="llm")
    assert err.stage == "llm"
    assert ProviderError("x").provider == ""  # the class default
    assert isinstance(err, RxkitError) and isinstance(err, Exception)
