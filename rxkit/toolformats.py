"""Tool descriptors in each provider's native format, and back: one converter per provider.

The providers send exactly what these functions return, and
:mod:`rxkit.tools` re-exports them for people who call an SDK themselves.
They live in the core because providers and tools are engines that know
nothing of each other, and both need them.

>>> d = ToolDescriptor(name="add", description="Add", input_schema={"type": "object", "properties": {}})
>>> to_openai([d])[0]["function"]["name"]
'add'
>>> to_gemini([d])[0]["functionDeclarations"][0]["parametersJsonSchema"]
{'type': 'object', 'properties': {}}
>>> from_anthropic(to_anthropic([d])) == [d] == from_gemini(to_gemini([d]))
True
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from rxkit.errors import ConfigError
from rxkit.types import ToolDescriptor

__all__ = [
    "from_anthropic",
    "from_gemini",
    "from_openai",
    "gemini_schema",
    "to_anthropic",
    "to_gemini",
    "to_openai",
]


def to_openai(tools: Iterable[ToolDescriptor]) -> list[dict[str, Any]]:
    """OpenAI Chat Completions ``tools`` (also what OpenAI-compatible servers take)."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
        for t in tools
    ]


def from_openai(tools: Iterable[dict[str, Any]]) -> list[ToolDescriptor]:
    """Descriptors from OpenAI ``tools`` entries (or bare ``function`` objects)."""
    out = []
    for t in tools:
        fn = t.get("function", t)
        if "name" not in fn:
            raise ConfigError(f"OpenAI tool without a name: {t!r}")
        out.append(
            ToolDescriptor(
                name=fn["name"],
                description=fn.get("description", ""),
                input_schema=fn.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    return out


def to_anthropic(tools: Iterable[ToolDescriptor]) -> list[dict[str, Any]]:
    """Anthropic Messages ``tools``: ``name``, ``input_schema``, and ``description`` when there is one."""
    out = []
    for t in tools:
        entry: dict[str, Any] = {"name": t.name, "input_schema": t.input_schema}
        if t.description:
            entry["description"] = t.description
        out.append(entry)
    return out


def from_anthropic(tools: Iterable[dict[str, Any]]) -> list[ToolDescriptor]:
    """Descriptors from Anthropic ``tools`` entries."""
    return [
        ToolDescriptor(
            name=t["name"],
            description=t.get("description", ""),
            input_schema=t.get("input_schema") or {"type": "object", "properties": {}},
        )
        for t in tools
    ]


def to_gemini(tools: Sequence[ToolDescriptor]) -> list[dict[str, Any]]:
    """Gemini ``tools``: one entry holding ``functionDeclarations``.

    Each declaration carries the schema unchanged as ``parametersJsonSchema``,
    which takes full JSON Schema (``$ref``/``$defs``, ``additionalProperties``,
    ``const``, ``oneOf``, type lists...). The older ``parameters`` field takes
    only Google's OpenAPI subset and rejects those keys with a 400.
    """
    if not tools:
        return []
    decls = []
    for t in tools:
        decl: dict[str, Any] = {"name": t.name, "parametersJsonSchema": t.input_schema}
        if t.description:
            decl["description"] = t.description
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def from_gemini(tools: Iterable[dict[str, Any]]) -> list[ToolDescriptor]:
    """Descriptors from Gemini ``tools`` entries (``parametersJsonSchema`` or ``parameters``, either casing)."""
    out = []
    for entry in tools:
        for d in entry.get("functionDeclarations", entry.get("function_declarations", [])):
            schema = (
                d.get("parametersJsonSchema")
                or d.get("parameters_json_schema")
                or d.get("parameters")
                or {"type": "object", "properties": {}}
            )
            out.append(ToolDescriptor(name=d["name"], description=d.get("description", ""), input_schema=schema))
    return out


# Keys that most often break Gemini's OpenAPI-subset ``parameters``; the subset lacks others too
# (const, oneOf, allOf, exclusiveMinimum, type lists...), which is why to_gemini sends parametersJsonSchema.
_GEMINI_DROP = {"$defs", "definitions", "additionalProperties", "title", "default", "$schema", "examples"}


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema simplified toward Gemini's OpenAPI-subset ``parameters``: ``$ref`` inlined, common extras dropped.

    Only for APIs that take nothing but ``parameters`` (:func:`to_gemini` does
    not need it). Keywords outside the subset that are not dropped here still
    make such an API refuse the schema.
    """
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def walk(node: Any, depth: int = 0) -> Any:
        if depth > 32:
            raise ConfigError("tool schema nests too deeply (recursive $ref?) for Gemini")
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                if name not in defs:
                    raise ConfigError(f"tool schema refers to unknown definition {node['$ref']!r}")
                return walk(copy.deepcopy(defs[name]), depth + 1)
            return {k: walk(v, depth + 1) for k, v in node.items() if k not in _GEMINI_DROP}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out
