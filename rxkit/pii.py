"""Personal data in text: emails, phone numbers and payment card numbers (Luhn-checked), found, redacted or blocked.

>>> detector = PIIDetector()
>>> detector.redact("Mail ada@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.")
'Mail [EMAIL] or call [PHONE]; card [CARD].'
>>> detector.redact("Order 1234 5678 9012 3456 is not a card: its Luhn check fails.")
'Order 1234 5678 9012 3456 is not a card: its Luhn check fails.'
>>> PIIDetector(action="block").check_final("write to ada@example.com")
'contains personal data (email)'

As a guardrail (:func:`rxkit.operators.guardrail`), ``action="redact"``
replaces what it finds in the user's input and in the streamed answer (it
holds back at most ``hold`` characters of the stream, so that a number split
across tokens is still caught); ``action="block"`` rejects the input, or
stops the answer mid-way, like any validator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from rxkit.errors import ConfigError
from rxkit.validation import RunningText, Validator

__all__ = ["PII_KINDS", "PIIDetector", "PIIMatch", "luhn_valid"]

PII_KINDS = ("email", "phone", "card")
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_CARD = r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"
_PHONE = r"(?<![\w+])\+?\(?\d[\d\s().-]{6,18}\d(?![\d])"
_PATTERNS = {"email": re.compile(_EMAIL), "card": re.compile(_CARD), "phone": re.compile(_PHONE)}


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of the digits in ``number`` (payment cards carry one).

    >>> luhn_valid("4111 1111 1111 1111"), luhn_valid("4111 1111 1111 1112")
    (True, False)
    """
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class PIIMatch:
    """One finding: its kind and where it is."""

    __slots__ = ("kind", "start", "end")

    def __init__(self, kind: str, start: int, end: int) -> None:
        self.kind, self.start, self.end = kind, start, end

    def __repr__(self) -> str:
        return f"PIIMatch({self.kind!r}, {self.start}, {self.end})"


class PIIDetector(Validator):
    """Finds emails, phone numbers (9 to 15 digits) and card numbers (13 to 19 digits passing Luhn).

    ``action``: ``"redact"`` (replace each with ``[EMAIL]``, ``[PHONE]``,
    ``[CARD]``) or ``"block"`` (a validator that rejects text holding any).
    ``kinds`` limits what is looked for.
    """

    hold = 48  # characters of a stream held back: longer than any finding with its separators

    def __init__(
        self, *, action: Literal["redact", "block"] = "redact", kinds: Iterable[str] = PII_KINDS, name: str = "pii"
    ) -> None:
        if action not in ("redact", "block"):
            raise ConfigError(f"PIIDetector action must be 'redact' or 'block', not {action!r}")
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(PII_KINDS)
        if unknown or not self.kinds:
            raise ConfigError(f"PIIDetector kinds must be among {', '.join(PII_KINDS)}, not {sorted(unknown)}")
        self.action = action
        self.name = name

    def find(self, text: str) -> list[PIIMatch]:
        """Every finding, in text order, none overlapping (cards first, then emails, then phones)."""
        found: list[PIIMatch] = []
        taken: list[tuple[int, int]] = []
        for kind in ("card", "email", "phone"):
            if kind not in self.kinds:
                continue
            for m in _PATTERNS[kind].finditer(text):
                start, end = m.span()
                if kind == "card" and not luhn_valid(m.group()):
                    continue
                if kind == "phone" and not 9 <= sum(c.isdigit() for c in m.group()) <= 15:
                    continue
                if any(s < end and start < e for s, e in taken):
                    continue
                taken.append((start, end))
                found.append(PIIMatch(kind, start, end))
        found.sort(key=lambda f: f.start)
        return found

    def redact(self, text: str) -> str:
        """``text`` with each finding replaced by its kind in capitals, in brackets."""
        found = self.find(text)
        if not found:
            return text
        out, last = [], 0
        for f in found:
            out.append(text[last : f.start])
            out.append(f"[{f.kind.upper()}]")
            last = f.end
        out.append(text[last:])
        return "".join(out)

    # -- as a validator (action="block") ---------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self.action == "block"

    def check_chunk(self, delta: str, text: RunningText) -> str | None:
        if self.action != "block":
            return None
        return self._reason(text.tail(len(delta) + self.hold))

    def check_final(self, text: str) -> str | None:
        return self._reason(text) if self.action == "block" else None

    def _reason(self, text: str) -> str | None:
        found = self.find(text)
        if not found:
            return None
        kinds = sorted({f.kind for f in found})
        return f"contains personal data ({', '.join(kinds)})"

    def __repr__(self) -> str:
        return f"PIIDetector(action={self.action!r}, kinds={self.kinds!r})"
