"""Tools from Python functions: schema from hints and docstrings, argument checks, execution."""

from __future__ import annotations

import asyncio
import doctest
import threading
import time

import pytest
from pydantic import BaseModel

import rxkit.toolformats
from rxkit.errors import ConfigError, ToolArgumentsError, ToolExecutionError, ToolNotFoundError
from rxkit.toolformats import (
    from_anthropic,
    from_gemini,
    from_openai,
    gemini_schema,
    to_anthropic,
    to_gemini,
    to_openai,
)
from rxkit.tools import ToolRegistry, tool
from rxkit.types import ToolDescriptor


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
    # Full JSON Schema, $defs and all, in the field that takes it (``parameters`` would refuse it).
    assert gem == [
        {
            "functionDeclarations": [
                {
                    "name": "distance",
                    "description": "Distance between two points.",
                    "parametersJsonSchema": distance.descriptor.input_schema,
                }
            ]
        }
    ]
    assert "$defs" in distance.descriptor.input_schema
    assert from_gemini(gem) == [distance.descriptor]
    assert to_gemini([]) == []


def test_gemini_schema_inlines_refs_for_the_openapi_subset() -> None:
    schema = gemini_schema(distance.descriptor.input_schema)
    assert schema["properties"]["p"]["properties"]["x"] == {"type": "number"}
    assert "additionalProperties" not in str(schema) and "$ref" not in str(schema)


def test_formats_leave_out_an_empty_description_where_the_provider_does() -> None:
    bare = ToolDescriptor(name="now")
    assert to_anthropic([bare]) == [{"name": "now", "input_schema": bare.input_schema}]
    assert to_gemini([bare]) == [{"functionDeclarations": [{"name": "now", "parametersJsonSchema": bare.input_schema}]}]
    assert to_openai([bare])[0]["function"]["description"] == ""
    assert (
        from_anthropic(to_anthropic([bare]))
        == from_gemini(to_gemini([bare]))
        == from_openai(to_openai([bare]))
        == [bare]
    )


def test_gemini_schema_rejects_unknown_refs() -> None:
    with pytest.raises(ConfigError, match="unknown definition"):
        gemini_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}})


def test_doctests() -> None:
    assert doctest.testmod(rxkit.toolformats).failed == 0


def test_a_hung_sync_tool_does_not_hold_a_blocking_ask() -> None:
    """The tool times out at 1 s and the model is told so; ask() returns then, not when the tool's thread ends
    (it used to wait for it: asyncio.run's shutdown joins the default executor's threads)."""
    from rxkit.graphs import Conversation
    from rxkit.providers.mock import MockProvider, MockResponse
    from rxkit.types import ToolCall

    release = threading.Event()
    threads: list[threading.Thread] = []

    @tool(timeout=1)
    def stuck() -> str:
        """Never returns until the test lets it."""
        threads.append(threading.current_thread())
        release.wait()
        return "late"

    mock = MockProvider([MockResponse(tool_calls=[ToolCall(id="c1", name="stuck", arguments="{}")]), "gave up"])
    chat = Conversation(mock, tools=[stuck])
    answers: list[str] = []
    asker = threading.Thread(target=lambda: answers.append(chat.ask("go")))
    try:
        start = time.monotonic()
        asker.start()
        asker.join(timeout=4)  # the 1 s tool timeout plus a wide margin
        took = time.monotonic() - start
        assert not asker.is_alive(), "ask() still waits for the hung tool's thread"
    finally:
        release.set()
        asker.join(timeout=5)
        chat.close()
    assert answers == ["gave up"] and 0.9 < took < 4
    (result,) = [r for m in mock.requests[1].messages for r in m.tool_results]
    assert result.is_error and "timed out" in result.content
    (thread,) = threads
    assert thread.daemon  # never keeps the process alive at exit
    thread.join(timeout=5)  # released: it ends, its late result dropped
    assert not thread.is_alive()
