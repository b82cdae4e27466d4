"""Tool descriptors in each provider's native format, and back.

>>> d = ToolDescriptor(name="add", description="Add", input_schema={"type": "object", "properties": {}})
>>> to_openai([d])[0]["function"]["name"]
'add'
>>> from_anthropic(to_anthropic([d])) == [d]
True
"""

from __future__ import annotations

import copy
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


def to_openai(tools: list[ToolDescriptor]) -> list[dict[str, Any]]:
    """OpenAI Chat Completions ``tools``."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
        for t in tools
    ]


def from_openai(tools: list[dict[str, Any]]) -> list[ToolDescriptor]:
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


def to_anthropic(tools: list[ToolDescriptor]) -> list[dict[str, Any]]:
    """Anthropic Messages ``tools`` (``input_schema``)."""
    return [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools]


def from_anthropic(tools: list[dict[str, Any]]) -> list[ToolDescriptor]:
    return [
        ToolDescriptor(
            name=t["name"],
            description=t.get("description", ""),
            input_schema=t.get("input_schema") or {"type": "object", "properties": {}},
        )
        for t in tools
    ]


# Gemini's ``parameters`` take an OpenAPI 3.0 subset: no $ref/$defs, no additionalProperties.
_GEMINI_DROP = {"$defs", "definitions", "additionalProperties", "title", "default", "$schema", "examples"}


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema rewritten for Gemini: ``$ref`` inlined, unsupported keywords dropped."""
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


def to_gemini(tools: list[ToolDescriptor]) -> list[dict[str, Any]]:
    """Gemini ``tools``: one entry holding ``functionDeclarations``."""
    if not tools:
        return []
    decls = [{"name": t.name, "description": t.description, "parameters": gemini_schema(t.input_schema)} for t in tools]
    return [{"functionDeclarations": decls}]


def from_gemini(tools: list[dict[str, Any]]) -> list[ToolDescriptor]:
    out = []
    for entry in tools:
        for d in entry.get("functionDeclarations", entry.get("function_declarations", [])):
            out.append(
                ToolDescriptor(
                    name=d["name"],
                    description=d.get("description", ""),
                    input_schema=d.get("parameters") or {"type": "object", "properties": {}},
                )
            )
    return out
