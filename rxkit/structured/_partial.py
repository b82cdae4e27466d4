"""Partial values: the open objects and lists of a parse, and the values a partial shows for them."""

from __future__ import annotations

import enum
from typing import Any, Final

from pydantic import BaseModel

from rxkit.structured._shape import Shape

__all__ = ["ANY", "MISSING", "Node", "construct", "display"]

MISSING: Final[Any] = object()
ANY: Final = Shape("any")
HIDDEN: Final = Shape("any")  # a value under a key the model has no field for: kept for validation, never shown
HIDDEN.streams = False


class Node:
    """An open object or array, with what it holds so far (``raw`` for validation, ``shown`` for partials)."""

    __slots__ = (
        "shape", "obj", "raw", "shown", "key", "wire", "known", "hidden", "child", "wrap", "unwrap", "values", "cache",
    )  # fmt: skip

    def __init__(self, shape: Shape, obj: bool, wrap: bool = False, unwrap: bool = False) -> None:
        self.shape = shape
        self.obj = obj
        self.raw: Any = {} if obj else []
        self.shown: Any = {} if obj else []
        self.key: str | None = None  # object: the field (or key) whose value comes next
        self.wire = ""  # object: that key as validation wants it (the alias where there is one)
        self.known = True  # object: the key names a field of the model (shown in partials)
        self.hidden = False  # opened inside a value no partial shows (under a key the model lacks)
        self.child = shape.item if not obj and shape.item is not None else ANY
        self.wrap = wrap  # a single object where a list was expected
        self.unwrap = unwrap  # a list where a single value was expected
        # A plain model's field values as a partial shows them (defaults where nothing came yet), kept up to
        # date as values complete, and the partial built from them, until the next one completes.
        self.values: dict[str, Any] | None = dict(shape.blank) if obj and shape.plain else None
        self.cache: Any = None

    def put(self, key: str, shown: Any) -> None:
        """A complete value for ``key`` (an object's field)."""
        self.shown[key] = shown
        if self.values is not None:
            self.values[key] = shown
        self.cache = None

    def closed(self) -> Any:
        """What a partial shows for this object once it is complete (before wrapping)."""
        if self.values is not None:
            return self.cache if self.cache is not None else _plain(self.shape.tp, self.values.copy(), set(self.shown))
        return construct(self.shape, self.shown)

    def view(self, child: Any) -> Any:
        """What a partial shows for this node, with ``child`` as its open last value."""
        if self.obj:
            shape = self.shape
            values = self.values
            if values is not None:  # the hot case, inlined: a plain model from its kept values
                if child is MISSING or not self.known:
                    out = self.cache
                    if out is None:  # unchanged since the last partial: that one is shared
                        out = self.cache = _plain(shape.tp, values.copy(), set(self.shown))
                else:
                    key: Any = self.key  # a field name: known is True
                    values = values.copy()
                    values[key] = child
                    fields = set(self.shown)
                    fields.add(key)
                    out = _new(shape.tp)
                    _set_dict(out, values)
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
    """A partial for an object that is not a plain model (those keep their ``values``): a model or a dict."""
    if shape.kind == "model":
        return shape.tp.model_construct(_fields_set=set(shown), **{**shape.blank, **shown})
    return dict(shown)


# A partial model is built at every token. For a plain model (no private attributes, extras or
# post-init: Shape.plain) setting the four attributes pydantic's model_construct sets costs a
# third of calling it; test_parser.py checks both agree, so a pydantic upgrade that changes them fails loudly.
_new: Final = object.__new__
# The slots' own descriptors (BaseModel's __slots__ name all four): half the cost of object.__setattr__.
_set_dict: Final = BaseModel.__dict__["__dict__"].__set__
_set_fields: Final = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra: Final = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private: Final = BaseModel.__dict__["__pydantic_private__"].__set__


def _plain(tp: Any, values: dict[str, Any], fields: set[str]) -> Any:
    obj = _new(tp)
    _set_dict(obj, values)
    _set_fields(obj, fields)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def display(value: Any, shape: Shape) -> Any:
    """What a partial shows for a complete value: an enum member for an enum position."""
    if shape.kind == "enum" and not isinstance(value, enum.Enum):
        try:
            return shape.tp(value)
        except ValueError:
            return value
    return value
