"""Schema alignment: coerce what a model wrote to what the target type expects.

Coercions are the forgiving ones a model needs (BAML's schema-aligned
parsing is the reference): ``"5"`` for an int, ``"1,200.5"`` for a float,
``"Yes"`` for a bool, an enum or literal by value or name in any case and
spacing, a number where a string is expected, a single item where a list is
expected. What cannot be coerced is left as written, for the final pydantic
validation to report.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import ValidationError

from rxkit.structured._shape import Shape, norm_key

__all__ = ["align", "align_answer", "bare_value"]

_NUMBER: Final = re.compile(r"^[-+]?(\d[\d,_]*)?(\.\d+)?([eE][-+]?\d+)?$")
_TRUE: Final = frozenset({"true", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "no", "n", "0"})
_FENCE: Final = re.compile(r"^```[\w-]*\s*|\s*```\s*$")


def align(value: Any, shape: Shape) -> Any:
    """``value`` (a complete, parsed value) aligned to ``shape``.

    >>> from rxkit.structured._shape import shape_of
    >>> align("5", shape_of(int)), align({"a": 1}, shape_of(list[dict])), align(" yes ", shape_of(bool))
    (5, [{'a': 1}], True)
    """
    kind = shape.kind
    if value is None:
        return None
    if kind == "any" or kind == "model" or kind == "dict":
        return value
    if isinstance(value, list) and len(value) == 1 and kind != "list" and kind != "union":
        value = value[0]  # one value where one was expected, in a list
    if kind == "list":
        if isinstance(value, list):
            return value
        item = shape.item
        return [align(value, item) if item is not None else value]
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return value
    if kind == "int" or kind == "float":
        number = _number(value)
        if number is None:
            return value
        if kind == "int":
            if isinstance(number, int):
                return number  # exact, however long (float() of it could overflow)
            return int(number) if number.is_integer() else number
        try:
            return float(number)
        except OverflowError:  # an int past float's range: left as it is, for validation to refuse
            return number
    if kind == "bool":
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        return value
    if kind == "enum" or kind == "literal":
        key = norm_key(str(value).strip().strip("\"'"))
        return shape.choices.get(key, value)
    if kind == "union":
        return _union(value, shape)
    return value


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        if _NUMBER.match(text) and any(c.isdigit() for c in text):
            text = text.replace(",", "").replace("_", "")
            try:
                return int(text)
            except ValueError:
                return float(text)
    return None


def _union(value: Any, shape: Shape) -> Any:
    # An arm that takes the value as it is wins; then the first arm that coerces it to a different value.
    for arm in shape.arms:
        try:
            arm.adapter().validate_python(value, strict=True)
        except (ValidationError, TypeError):
            continue
        return value
    for arm in shape.arms:
        aligned = align(value, arm)
        if aligned is not value:
            try:
                arm.adapter().validate_python(aligned)
            except (ValidationError, TypeError):
                continue
            return aligned
    return value


_WORDS: Final = {"true": True, "false": False, "null": None, "none": None, "nil": None}


def bare_value(text: str) -> Any:
    """A bare word: a JSON literal (any case), a number, or else the text itself."""
    lowered = text.lower()
    if lowered in _WORDS:
        return _WORDS[lowered]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def align_answer(text: str, shape: Shape) -> Any:
    """A whole answer for a scalar type: fences and quotes stripped, then aligned."""
    body = _FENCE.sub("", text.strip()).strip()
    if shape.kind == "str":
        if len(body) >= 2 and body[0] == body[-1] == '"':
            try:
                decoded = json.loads(body)
            except ValueError:
                return body
            return decoded if isinstance(decoded, str) else body
        return body
    if shape.kind in ("enum", "literal"):
        value = align(body, shape)
        if value is body:  # BAML-style: the one category the text names
            words = {w.strip(".,:;!?\"'`*").lower() for w in body.split()}
            hits = [v for k, v in shape.choices.items() if k in words]
            if len(set(hits)) == 1:
                return hits[0]
        return value
    try:
        value = json.loads(body)
    except ValueError:
        value = bare_value(body.split()[0]) if body.split() else None
    return align(value, shape)
