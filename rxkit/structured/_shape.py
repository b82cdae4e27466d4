"""Shapes: a target type compiled once into what the parser needs to align values to it."""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from pydantic import BaseModel, TypeAdapter

__all__ = ["Shape", "shape_of"]

_KEY_NORM: Final = re.compile(r"[\s\-]+")


def norm_key(key: str) -> str:
    """``"First Name"``, ``"first-name"`` and ``"FIRST_NAME"`` all become ``"first_name"``."""
    return _KEY_NORM.sub("_", key.strip()).lower()


@final
class Shape:
    """What a position in the output is expected to hold.

    ``kind`` is one of ``model``, ``list``, ``dict``, ``str``, ``int``, ``float``, ``bool``,
    ``enum``, ``literal``, ``union``, ``none`` or ``any``. Strings stream into partials
    (``streams``); other scalars show only once complete.
    """

    __slots__ = (
        "kind",
        "tp",
        "item",
        "fields",
        "keys",
        "wires",
        "blank",
        "defaulted",
        "choices",
        "arms",
        "nullable",
        "streams",
        "plain",
        "_adapter",
    )

    def __init__(self, kind: str, tp: Any = None) -> None:
        self.kind = kind
        self.tp = tp
        self.item: Shape | None = None  # list item, dict value
        self.fields: dict[str, Shape] = {}  # model: field name -> shape
        self.keys: dict[str, str] = {}  # model: normalised name or alias -> field name
        self.wires: dict[str, str] = {}  # model: field name -> the key validation takes (its alias, if any)
        self.blank: dict[str, Any] = {}  # model: what a partial shows for a field not seen yet
        self.defaulted: frozenset[str] = frozenset()  # model: fields with a default that take no None (null: default)
        self.choices: dict[str, Any] = {}  # enum/literal: normalised text -> value
        self.arms: list[Shape] = []  # union
        self.nullable = False
        self.streams = kind in ("str", "any")
        self.plain = False  # model: no private attributes, extras or post-init (partials skip model_construct)
        self._adapter: TypeAdapter[Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The same in both builds: a compiled (native) class cannot make instances of an interpreted subclass.
        raise TypeError(f"{cls.__name__}: Shape is not meant to be subclassed (it is compiled)")

    def adapter(self) -> TypeAdapter[Any]:
        """A pydantic TypeAdapter for this position's type, built once."""
        if self._adapter is None:
            self._adapter = TypeAdapter(self.tp)
        return self._adapter

    def field(self, key: str) -> tuple[str, Shape] | None:
        """The field a key in the text names (exact, alias, or case/space/dash-insensitive)."""
        name = key if key in self.fields else self.keys.get(norm_key(key))
        return (name, self.fields[name]) if name is not None else None

    def __repr__(self) -> str:
        return f"Shape({self.kind}, {self.tp!r})"


def shape_of(tp: Any, _seen: dict[Any, Shape] | None = None) -> Shape:
    """Compile ``tp`` (a pydantic model or any type pydantic validates) into a :class:`Shape`.

    >>> shape_of(list[int]).kind, shape_of(list[int]).item.kind
    ('list', 'int')
    """
    seen = {} if _seen is None else _seen
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return shape_of(args[0], seen)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return seen[tp]
        shape = seen[tp] = Shape("model", tp)
        shape.plain = (
            tp.__pydantic_post_init__ is None
            and not tp.__private_attributes__
            and tp.model_config.get("extra") != "allow"
        )
        for name, info in tp.model_fields.items():
            shape.fields[name] = shape_of(info.annotation, seen)
            shape.keys[norm_key(name)] = name
            shape.wires[name] = info.alias or name
            if info.alias:
                shape.keys[norm_key(info.alias)] = name
            if not info.is_required():
                default = info.get_default(call_default_factory=True)
                shape.blank[name] = default
                field = shape.fields[name]
                if not field.nullable and field.kind not in ("none", "any"):
                    shape.defaulted |= {name}
            else:
                shape.blank[name] = None
        return shape
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:
            shape = _copy(shape_of(arms[0], seen))
            shape.nullable = True
            return shape
        shape = Shape("union", tp)
        shape.arms = [shape_of(a, seen) for a in arms]
        shape.nullable = len(arms) != len(args)
        shape.streams = any(a.streams for a in shape.arms)
        return shape
    if origin is typing.Literal:
        shape = Shape("literal", tp)
        shape.choices = {norm_key(str(a)): a for a in args}
        shape.nullable = None in args
        return shape
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        shape = Shape("enum", tp)
        for member in tp:
            shape.choices[norm_key(str(member.value))] = member.value
            shape.choices.setdefault(norm_key(member.name), member.value)
        return shape
    if origin in (list, tuple, set, frozenset) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        shape = Shape("list", tp)
        shape.item = shape_of(args[0], seen) if args else Shape("any")
        return shape
    if tp in (list, tuple, set, frozenset):
        shape = Shape("list", tp)
        shape.item = Shape("any")
        return shape
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)) or tp is dict:
        shape = Shape("dict", tp)
        shape.item = shape_of(args[1], seen) if len(args) == 2 else Shape("any")
        return shape
    if tp is type(None) or tp is None:
        return Shape("none", tp)
    for kind in (bool, int, float, str):  # bool before int: bool is an int
        if tp is kind:
            return Shape(kind.__name__, tp)
    return Shape("any", tp)


def _copy(shape: Shape) -> Shape:
    # Every slot, one by one: mypyc compiles Shape to a native class, which has no __slots__ to loop over
    # (test_shape_copy_has_every_slot checks none is left out).
    twin = Shape(shape.kind, shape.tp)
    twin.item, twin.fields, twin.keys, twin.wires = shape.item, shape.fields, shape.keys, shape.wires
    twin.blank, twin.defaulted, twin.choices, twin.arms = shape.blank, shape.defaulted, shape.choices, shape.arms
    twin.nullable, twin.streams, twin.plain, twin._adapter = shape.nullable, shape.streams, shape.plain, shape._adapter
    return twin
