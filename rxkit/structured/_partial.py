"""Partial values: the open objects and lists of a parse, and the values a partial shows for them."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel

from rxkit.structured._shape import Shape

__all__ = ["ANY", "MISSING", "Node", "construct", "display"]

MISSING: Any = object()
ANY = Shape("any")


class Node:
    """An open object or array, with what it holds so far (``raw`` for validation, ``shown`` for partials)."""

    __slots__ = ("shape", "obj", "raw", "shown", "key", "wire", "known", "child", "wrap", "unwrap")

    def __init__(self, shape: Shape, obj: bool, wrap: bool = False, unwrap: bool = False) -> None:
        self.shape = shape
        self.obj = obj
        self.raw: Any = {} if obj else []
        self.shown: Any = {} if obj else []
        self.key: str | None = None  # object: the field (or key) whose value comes next
        self.wire = ""  # object: that key as validation wants it (the alias where there is one)
        self.known = True  # object: the key names a field of the model (shown in partials)
        self.child = shape.item if not obj and shape.item is not None else ANY
        self.wrap = wrap  # a single object where a list was expected
        self.unwrap = unwrap  # a list where a single value was expected

    def view(self, child: Any) -> Any:
        """What a partial shows for this node, with ``child`` as its open last value."""
        if self.obj:
            shape = self.shape
            if shape.plain:  # the hot case, inlined: one dict built per partial model
                values = {**shape.blank, **self.shown}
                fields = set(self.shown)
                if child is not MISSING and self.known:
                    values[self.key] = child
                    fields.add(self.key)
                out: Any = _new(shape.tp)
                _set(out, "__dict__", values)
                _set_fields(out, fields)
                _set_extra(out, None)
                _set_private(out, None)
            else:
                shown = self.shown if child is MISSING or not self.known else {**self.shown, self.key: child}
                out = construct(shape, shown)
            return [out] if self.wrap else out
        items = self.shown if child is MISSING else [*self.shown, child]
        if self.unwrap:
            return items[0] if items else None
        return list(items) if items is self.shown else items


def construct(shape: Shape, shown: dict[str, Any]) -> Any:
    if shape.kind == "model":
        if shape.plain:
            obj = _new(shape.tp)
            _set(obj, "__dict__", {**shape.blank, **shown})
            _set_fields(obj, set(shown))
            _set_extra(obj, None)
            _set_private(obj, None)
            return obj
        return shape.tp.model_construct(_fields_set=set(shown), **{**shape.blank, **shown})
    return dict(shown)


# A partial model is built at every token. For a plain model (no private attributes, extras or
# post-init: Shape.plain) setting the four attributes pydantic's model_construct sets costs a
# third of calling it; test_parser.py checks both agree, so a pydantic upgrade that changes them fails loudly.
_set = object.__setattr__
_new = object.__new__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__  # the slots' own descriptors: half the cost
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def display(value: Any, shape: Shape) -> Any:
    """What a partial shows for a complete value: an enum member for an enum position."""
    if shape.kind == "enum" and not isinstance(value, enum.Enum):
        try:
            return shape.tp(value)
        except ValueError:
            return value
    return value
