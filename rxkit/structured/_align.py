"""Schema alignment: coerce what a model wrote to what the target type expects.

Coercions are the forgiving ones a model needs (BAML's schema-aligned
parsing is the reference): ``"5"`` for an int, ``"1,200.5"`` for a float,
``"Yes"`` for a bool, an enum or literal by value or name in any case and
spacing, a number where a string is expected, a single item where a list is
expected. What cannot be coerced is left as written, for the final pydantic
validation to report.
"""

from __future__ import annotations

import re
from typing import Any

from rxkit.structured._shape import Shape, norm_key

__all__ = ["align"]

_NUMBER = re.compile(r"^[-+]?(\d[\d,_]*)?(\.\d+)?([eE][-+]?\d+)?$")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


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
            return int(number) if float(number).is_integer() else number
        return float(number)
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
    from pydantic import TypeAdapter, ValidationError

    for arm in shape.arms:
        try:
            TypeAdapter(arm.tp).validate_python(value, strict=True)
        except (ValidationError, TypeError):
            continue
        return value
    for arm in shape.arms:
        aligned = align(value, arm)
        if aligned is not value:
            try:
                TypeAdapter(arm.tp).validate_python(aligned)
            except (ValidationError, TypeError):
                continue
            return aligned
    return value
