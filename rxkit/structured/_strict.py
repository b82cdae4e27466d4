"""``strict_json_schema``: a type's JSON schema in the form OpenAI's strict structured outputs accept.

Strict mode (``"strict": true``) makes the model's answer match the schema
exactly, but only takes a subset of JSON Schema: every object closes
(``additionalProperties: false``) and lists all its properties as required,
and ``$ref`` stands alone. The transformation is openai-python's
``to_strict_json_schema`` (``openai/lib/_pydantic.py``, Apache-2.0), ported so
that rxkit needs no openai import, plus one step it leaves out: a field that
was optional becomes nullable, so the model can still leave it out by writing
``null`` (the parser then keeps the field's default). A free-form object
(a ``dict``) or a root that is not an object cannot be strict: those raise
:class:`~rxkit.errors.ConfigError` naming the place.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import TypeAdapter

from rxkit.errors import ConfigError

__all__ = ["strict_json_schema"]


def strict_json_schema(target: Any) -> dict[str, Any]:
    """The strict-mode JSON schema of ``target`` (a pydantic model, or any type whose schema is an object).

    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     city: str
    ...     country: str | None = None
    >>> schema = strict_json_schema(City)
    >>> schema["required"], schema["additionalProperties"], schema["properties"]["country"]
    (['city', 'country'], False, {'anyOf': [{'type': 'string'}, {'type': 'null'}], 'title': 'Country'})
    >>> class Tagged(BaseModel):
    ...     labels: dict[str, str]
    >>> strict_json_schema(Tagged)
    Traceback (most recent call last):
    ...
    rxkit.errors.ConfigError: strict JSON schema: properties/labels is a free-form object (a dict): ...
    """
    schema = copy.deepcopy(TypeAdapter(target).json_schema())
    if schema.get("type") != "object" and "$ref" not in schema:
        raise ConfigError(f"strict JSON schema: the root must be an object, not {schema.get('type') or 'a union'}")
    return _strict(schema, path=(), root=schema)


def _where(path: tuple[str, ...]) -> str:
    return "/".join(path) or "(root)"


def _strict(schema: Any, *, path: tuple[str, ...], root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise ConfigError(f"strict JSON schema: {_where(path)} is not a schema object")
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        if isinstance(defs, dict):
            for name, sub in defs.items():
                _strict(sub, path=(*path, key, name), root=root)
    if schema.get("type") == "object":
        extra = schema.get("additionalProperties")
        if extra not in (None, False) or not isinstance(schema.get("properties"), dict):
            raise ConfigError(
                f"strict JSON schema: {_where(path)} is a free-form object (a dict): strict mode needs fixed properties"
            )
        schema["additionalProperties"] = False
    properties = schema.get("properties")
    if isinstance(properties, dict):
        required = set(schema.get("required", ()))
        schema["required"] = list(properties)
        schema["properties"] = {
            key: _strict(sub if key in required else _nullable(sub), path=(*path, "properties", key), root=root)
            for key, sub in properties.items()
        }
    items = schema.get("items")
    if isinstance(items, dict):
        schema["items"] = _strict(items, path=(*path, "items"), root=root)
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        schema["anyOf"] = [_strict(v, path=(*path, "anyOf", str(i)), root=root) for i, v in enumerate(any_of)]
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            schema.update(_strict(all_of[0], path=(*path, "allOf", "0"), root=root))
            schema.pop("allOf")
        else:
            schema["allOf"] = [_strict(v, path=(*path, "allOf", str(i)), root=root) for i, v in enumerate(all_of)]
    if "default" in schema and schema["default"] is None:  # nullable already says it; the model writes null
        schema.pop("default")
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) > 1:  # a $ref must stand alone: inline it beside the other keywords
        resolved = _resolve(root, ref)
        schema.update({**resolved, **schema})
        schema.pop("$ref")
        return _strict(schema, path=path, root=root)
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema, made to accept null (its default is dropped: strict mode requires the field)."""
    schema = {k: v for k, v in schema.items() if k != "default"}
    variants = schema.get("anyOf")
    if isinstance(variants, list):
        if not any(v.get("type") == "null" for v in variants if isinstance(v, dict)):
            schema["anyOf"] = [*variants, {"type": "null"}]
        return schema
    if schema.get("type") == "null":
        return schema
    outer: dict[str, Any] = {k: schema.pop(k) for k in ("title", "description") if k in schema}
    return {"anyOf": [schema, {"type": "null"}], **outer}


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ConfigError(f"strict JSON schema: unexpected $ref {ref!r} (not local, #/...)")
    node: Any = root
    for key in ref[2:].split("/"):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise ConfigError(f"strict JSON schema: $ref {ref!r} does not name a schema object")
    return node
