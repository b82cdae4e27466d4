"""Tools from Python functions: schema from hints and docstrings, argument checks, execution."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

from rxkit.errors import ConfigError, ToolArgumentsError, ToolExecutionError, ToolNotFoundError
from rxkit.tools import ToolRegistry, tool
from rxkit.tools.formats import (
    from_anthropic,
    from_gemini,
    from_openai,
    gemini_schema,
    to_anthropic,
    to_gemini,
    to_openai,
)


class Point(BaseModel):
    x: float
    y: float


@tool
def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second
            number
    Returns:
        the sum
    """
    return a + b


@tool(requires_approval=True, timeout=3)
async def distance(p: Point, q: Point) -> float:
    """Distance between two points."""
    return float(((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5)


def test_schema_comes_from_hints_and_docstring() -> None:
    d = add.descriptor
    assert d.name == "add"
    assert d.description == "Add two numbers."
    assert d.input_schema["required"] == ["a"]
    assert d.input_schema["properties"]["a"] == {"type": "integer", "description": "the first number"}
    assert d.input_schema["properties"]["b"]["description"] == "the second number"
    assert d.input_schema["properties"]["b"]["default"] == 2


def test_pydantic_parameters_are_allowed() -> None:
    schema = distance.descriptor.input_schema
    assert schema["properties"]["p"] == {"$ref": "#/$defs/Point"}
    assert distance.requires_approval and distance.timeout == 3


async def test_sync_tools_run_off_the_event_loop_and_async_ones_on_it() -> None:
    seen: list[str] = []

    @tool
    def where() -> str:
        """Report the thread."""
        seen.append(threading.current_thread().name)
        return "ok"

    assert (await where.run("{}")).content == "ok"
    assert seen[0] != threading.current_thread().name
    assert (await distance.run({"p": {"x": 0, "y": 0}, "q": {"x": 3, "y": 4}})).content == "5.0"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"a": "x"}', "is not of type 'integer'"),
        ("{", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"a": 1, "c": 3}', "'c' was unexpected"),
        ("{}", "'a' is a required property"),
    ],
)
async def test_bad_arguments_are_typed_errors(arguments: str, reason: str) -> None:
    with pytest.raises(ToolArgumentsError, match=reason):
        await add.run(arguments)


async def test_a_raising_tool_gives_a_typed_error() -> None:
    @tool
    def boom() -> None:
        """Fail."""
        raise ValueError("nope")

    with pytest.raises(ToolExecutionError, match="ValueError: nope") as info:
        await boom.run({})
    assert isinstance(info.value.__cause__, ValueError)


async def test_cancelling_an_async_tool_propagates() -> None:
    @tool
    async def wait() -> str:
        """Wait forever."""
        await asyncio.sleep(3600)
        return "never"

    task = asyncio.ensure_future(wait.run({}))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_star_arguments_cannot_be_described() -> None:
    with pytest.raises(ConfigError):

        @tool
        def anything(*args: int) -> None:
            """No."""


def test_registry_finds_tools_and_names_the_known_ones() -> None:
    reg = ToolRegistry([add])

    @reg.register
    def echo(text: str) -> str:
        """Say it back."""
        return text

    assert [d.name for d in reg.descriptors()] == ["add", "echo"]
    with pytest.raises(ToolNotFoundError, match="available tools: add, echo"):
        reg.get("missing")
    with pytest.raises(ConfigError, match="already registered"):
        reg.add(add)


def test_provider_formats_round_trip() -> None:
    ds = [add.descriptor]
    assert to_openai(ds) == [
        {
            "type": "function",
            "function": {"name": "add", "description": "Add two numbers.", "parameters": add.descriptor.input_schema},
        }
    ]
    assert from_openai(to_openai(ds)) == ds
    assert to_anthropic(ds)[0]["input_schema"] == add.descriptor.input_schema
    assert from_anthropic(to_anthropic(ds)) == ds
    gem = to_gemini([distance.descriptor])
    decl = gem[0]["functionDeclarations"][0]
    assert decl["parameters"]["properties"]["p"]["properties"]["x"] == {"type": "number"}
    assert "additionalProperties" not in str(decl) and "$ref" not in str(decl)
    assert from_gemini(gem)[0].name == "distance"


def test_gemini_schema_rejects_unknown_refs() -> None:
    with pytest.raises(ConfigError, match="unknown definition"):
        gemini_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}})
