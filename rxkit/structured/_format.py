"""``output_format``: the target type written compactly for the prompt (BAML's ``ctx.output_format``).

A type-definition sketch instead of the raw JSON schema: field names and
types, descriptions as ``//`` comments, enums and literals inline. It takes
a fraction of the schema's tokens and models follow it as well.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

from pydantic import BaseModel

from rxkit.structured._shape import Shape, shape_of

__all__ = ["output_format"]

_NAMES = {"str": "string", "int": "int", "float": "float", "bool": "bool", "none": "null", "any": "any"}


def output_format(target: Any, *, prefix: str | None = None) -> str:
    """The instruction telling a model how to answer with ``target``.

    >>> class City(BaseModel):
    ...     city: str
    ...     country: str
    >>> print(output_format(City))
    Answer in JSON using this schema:
    {
      city: string,
      country: string,
    }
    >>> print(output_format(list[int]))
    Answer with a JSON array using this schema:
    int[]
    """
    shape = shape_of(target)
    body = _render(shape, target, 0, set())
    if prefix is None:
        prefix = _prefix(shape)
    return f"{prefix}{body}"


def _prefix(shape: Shape) -> str:
    kind = shape.kind
    if kind == "model" or kind == "dict":
        return "Answer in JSON using this schema:\n"
    if kind == "list":
        return "Answer with a JSON array using this schema:\n"
    if kind in ("enum", "literal"):
        return "Answer with one of these values:\n"
    if kind == "str":
        return "Answer with a string: "
    return f"Answer as {'an' if kind == 'int' else 'a'} "


def _render(shape: Shape, tp: Any, indent: int, open_models: set[Any]) -> str:
    kind = shape.kind
    if kind == "model":
        if shape.tp in open_models:  # a recursive model: name it rather than recurse
            return str(shape.tp.__name__)
        open_models = open_models | {shape.tp}
        pad = "  " * (indent + 1)
        lines = ["{"]
        model: type[BaseModel] = shape.tp
        for name, info in model.model_fields.items():
            if info.description:
                lines.extend(f"{pad}// {line}" for line in info.description.splitlines())
            key = info.alias or name
            lines.append(f"{pad}{key}: {_render(shape.fields[name], info.annotation, indent + 1, open_models)},")
        lines.append("  " * indent + "}")
        text = "\n".join(lines)
    elif kind == "list":
        item = shape.item or Shape("any")
        inner = _render(item, None, indent, open_models)
        alternatives = item.kind in ("union", "enum", "literal") or item.nullable
        text = f"({inner})[]" if alternatives else f"{inner}[]"
    elif kind == "dict":
        value = shape.item or Shape("any")
        text = f"map<string, {_render(value, None, indent, open_models)}>"
    elif kind == "enum":
        text = " or ".join(_literal(m.value) for m in shape.tp)
    elif kind == "literal":
        text = " or ".join(_literal(v) for v in typing.get_args(shape.tp) if v is not None)
    elif kind == "union":
        text = " or ".join(_render(a, None, indent, open_models) for a in shape.arms)
    else:
        text = _NAMES.get(kind, "any")
    if shape.nullable and kind not in ("none",):
        text += " or null"
    return text


def _literal(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
