"""Validators for user input and model output.

A validator has a ``name`` and two hooks, both returning ``None`` when the
text is fine or a reason (a short string) when it is not:

* ``check_chunk(delta, text)``: called for each streamed delta, with the
  running text (a :class:`RunningText`, which already ends with ``delta``).
  It must be cheap: look at ``delta`` and ``text.tail(n)``, never rescan the
  whole text. Failing here aborts a stream mid-way.
* ``check_final(text)``: called once with the whole text (the user's input,
  or the model's answer at the end of a turn). It must be complete on its
  own: input validation calls only this hook.

>>> BannedWords(["darn"]).check_final("Well, DARN it")
"contains the banned word 'DARN'"
>>> MaxLength(5).check_final("short") is None
True

Write your own by subclassing :class:`Validator`, or wrap a function::

    no_shouting = validator(lambda text: not text.isupper(), name="no_shouting")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from rxkit.errors import ConfigError

__all__ = [
    "BannedWords",
    "JSONSchema",
    "MaxLength",
    "Regex",
    "RunningText",
    "ValidJSON",
    "Validator",
    "as_validators",
    "validator",
]


class RunningText:
    """The text streamed so far, kept as parts so that appending costs O(1).

    It also keeps a short copy of its end, sized to the longest :meth:`tail`
    asked for, so that per-delta checks cost O(tail) however long the text.

    >>> t = RunningText(); t.append("Hel"); t.append("lo")
    >>> len(t), t.tail(3), str(t)
    (5, 'llo', 'Hello')
    """

    __slots__ = ("_parts", "_length", "_recent", "_keep")

    def __init__(self, text: str = "") -> None:
        self._parts: list[str] = [text] if text else []
        self._length = len(text)
        self._recent = ""  # a suffix of the text, at least `_keep` long (or all of it), at most twice that
        self._keep = 0

    def append(self, delta: str) -> None:
        if delta:
            self._parts.append(delta)
            self._length += len(delta)
            if self._keep:
                recent = self._recent + delta
                self._recent = recent[-self._keep :] if len(recent) > 2 * self._keep else recent

    def tail(self, n: int) -> str:
        """The last ``n`` characters (all of them if there are fewer); costs O(n), not O(len)."""
        if n <= 0:
            return ""
        if n >= self._length:
            return "".join(self._parts)  # short: at most n characters
        recent = self._recent
        if n <= len(recent):
            return recent[len(recent) - n :]
        parts = self._parts
        i, got = len(parts), 0
        while got < n:
            i -= 1
            got += len(parts[i])
        joined = parts[i] if i == len(parts) - 1 else "".join(parts[i:])
        out = joined[got - n :]
        if n > self._keep:  # remember this size: later calls slice instead of walking the parts
            self._keep = n
            self._recent = out
        return out

    def clear(self) -> None:
        self._parts = []
        self._length = 0
        self._recent = ""

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        """The whole text (O(len) once; the joined text replaces the parts)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def __repr__(self) -> str:
        return f"RunningText(length={self._length})"


class Validator:
    """Base of validators: override one hook or both (see the module docstring)."""

    name: str = "validator"

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        """Check the newest ``delta`` of a stream; ``text`` ends with it."""
        return None

    def check_final(self, text: str) -> str | None:
        """Check the whole text."""
        return None

    @property
    def streaming(self) -> bool:
        """Whether :meth:`check_chunk` does anything (stages skip it per token otherwise)."""
        return type(self).check_chunk is not Validator.check_chunk

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def as_validators(items: Iterable[Any], stage: str) -> tuple[Validator, ...]:
    """Check that ``items`` are validator instances (a clear :class:`ConfigError` otherwise)."""
    out = []
    for item in items:
        if isinstance(item, type) or not callable(getattr(item, "check_final", None)):
            raise ConfigError(f"{stage} takes validator instances (such as MaxLength(100)), not {item!r}")
        out.append(item)
    return tuple(out)


class BannedWords(Validator):
    """Reject text containing any of ``words`` (whole words or phrases, case-insensitive).

    While streaming, a word split across deltas is caught as soon as the
    character after it arrives (``"bad"`` may still become ``"badge"``).
    """

    def __init__(self, words: Iterable[str], *, name: str = "banned_words") -> None:
        cleaned = sorted({w.strip() for w in words}, key=len, reverse=True)
        if not cleaned or "" in cleaned:
            raise ConfigError("BannedWords needs at least one non-empty word")
        self.name = name
        self.words = tuple(cleaned)
        self._longest = len(cleaned[0])
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, cleaned)) + r")(?!\w)", re.IGNORECASE)

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        # A match is certain once the character after it has arrived; new such
        # matches start at most `longest` characters before the delta, and one
        # more character lets the look-behind see a word boundary.
        window = text.tail(len(delta) + self._longest + 1)
        pos = 0 if len(window) == len(text) else 1
        for match in self._pattern.finditer(window, pos):
            if match.end() < len(window):
                return self._reason(match)
        return None

    def check_final(self, text: str) -> str | None:
        match = self._pattern.search(text)
        return self._reason(match) if match else None

    @staticmethod
    def _reason(match: re.Match[str]) -> str:
        return f"contains the banned word {match.group(0)!r}"


class MaxLength(Validator):
    """Reject text longer than ``max_chars`` characters."""

    def __init__(self, max_chars: int, *, name: str = "max_length") -> None:
        if max_chars < 0:
            raise ConfigError(f"MaxLength needs max_chars >= 0, got {max_chars}")
        self.name = name
        self.max_chars = max_chars

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        return self._reason() if len(text) > self.max_chars else None

    def check_final(self, text: str) -> str | None:
        return self._reason() if len(text) > self.max_chars else None

    def _reason(self) -> str:
        return f"longer than {self.max_chars} characters"


class Regex(Validator):
    """Require ``must_match`` to be found in the text, and/or ``must_not_match`` never to be.

    ``must_not_match`` is also checked while streaming, over the newest delta
    plus ``window`` characters before it, and aborts as soon as a match is
    certain; a match longer than ``window`` is still caught by the final check.

    >>> Regex(must_not_match=r"\\bpassword\\b").check_final("my password is") is not None
    True
    """

    def __init__(
        self,
        must_match: str | re.Pattern[str] | None = None,
        must_not_match: str | re.Pattern[str] | None = None,
        *,
        flags: int = 0,
        window: int = 256,
        name: str = "regex",
    ) -> None:
        if must_match is None and must_not_match is None:
            raise ConfigError("Regex needs must_match or must_not_match")
        self.name = name
        self.window = window
        self.must_match = _compile(must_match, flags)
        self.must_not_match = _compile(must_not_match, flags)

    @property
    def streaming(self) -> bool:
        return self.must_not_match is not None

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        bad = self.must_not_match
        if bad is None:
            return None
        window = text.tail(len(delta) + self.window + 1)
        pos = 0 if len(window) == len(text) else 1  # one extra character for `^`, `\b` and look-behinds
        match = bad.search(window, pos)
        if match is None:
            return None
        # A match touching the end may vanish with more text (`\b`, `$`): it
        # counts only if it survives both a word and a non-word continuation.
        if match.end() < len(window) or (bad.search(window + " ", pos) and bad.search(window + "a", pos)):
            return f"matches the forbidden pattern {bad.pattern!r}"
        return None

    def check_final(self, text: str) -> str | None:
        if self.must_not_match is not None and self.must_not_match.search(text):
            return f"matches the forbidden pattern {self.must_not_match.pattern!r}"
        if self.must_match is not None and not self.must_match.search(text):
            return f"does not match the required pattern {self.must_match.pattern!r}"
        return None


def _compile(pattern: str | re.Pattern[str] | None, flags: int) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression {pattern!r}: {exc}") from exc


class ValidJSON(Validator):
    """Require the whole text to be one JSON document."""

    def __init__(self, *, name: str = "valid_json") -> None:
        self.name = name

    def check_final(self, text: str) -> str | None:
        return _parse_json(text)[1]


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


class JSONSchema(Validator):
    """Require the whole text to be JSON matching ``schema``.

    The schema itself is checked here: an invalid one raises :class:`ConfigError`.

    >>> JSONSchema({"type": "object", "required": ["a"]}).check_final('{"b": 1}')
    "does not match the schema at $: 'a' is a required property"
    """

    def __init__(self, schema: dict[str, Any], *, name: str = "json_schema") -> None:
        if not isinstance(schema, dict):
            raise ConfigError(f"a JSON schema must be an object, not {type(schema).__name__}")
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = exc.json_path if exc.path else "the root"
            raise ConfigError(f"invalid JSON schema at {where}: {exc.message}") from exc
        self.name = name
        self.schema = schema
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    @classmethod
    def from_model(cls, model: Any, *, name: str | None = None) -> JSONSchema:
        """The schema of a pydantic model class."""
        return cls(model.model_json_schema(), name=name or f"json_schema:{model.__name__}")

    def check_final(self, text: str) -> str | None:
        data, problem = _parse_json(text)
        if problem is not None:
            return problem
        error = best_match(self._validator.iter_errors(data))
        return None if error is None else f"does not match the schema at {error.json_path}: {error.message}"


class _FunctionValidator(Validator):
    def __init__(self, check: Callable[[str], bool | str | None], name: str) -> None:
        self.name = name
        self._check = check

    def check_final(self, text: str) -> str | None:
        verdict = self._check(text)
        if verdict is None or verdict is True:
            return None
        return verdict if isinstance(verdict, str) and verdict else f"rejected by {self.name}"


class _WindowValidator(_FunctionValidator):
    """The same check also on each streamed chunk, over the last ``window`` characters."""

    def __init__(self, check: Callable[[str], bool | str | None], name: str, window: int) -> None:
        super().__init__(check, name)
        self.window = window

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        return self.check_final(text.tail(max(self.window, len(delta))))


def validator(
    check: Callable[[str], bool | str | None], *, name: str | None = None, window: int | None = None
) -> Validator:
    """A validator from a function of the text (a predicate guardrail).

    The function returns ``True``/``None`` to accept, ``False`` or a reason string to reject.
    It sees the whole text at the end; with ``window`` it also sees the last
    ``window`` characters at each streamed chunk, so that it can stop an answer mid-way.

    >>> v = validator(lambda text: "?" not in text, name="no_questions")
    >>> v.check_final("why?")
    'rejected by no_questions'
    >>> validator(lambda text: "secret" not in text, window=20).streaming
    True
    """
    label = getattr(check, "__name__", "validator")
    label = name or (label if label.isidentifier() else "validator")
    if window is not None:
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"validator window must be a positive number of characters, not {window!r}")
        return _WindowValidator(check, label, window)
    return _FunctionValidator(check, label)
