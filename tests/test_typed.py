"""Typed functions: retry with feedback on the mock, native structured modes against loopback servers."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from pydantic import BaseModel

from rxkit.errors import ConfigError, ProviderHTTPError, StructuredOutputError
from rxkit.prompts import approx_tokens
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.providers.openai import OpenAIProvider
from rxkit.structured import output_format
from rxkit.telemetry.events import EventBus, StructuredResult, StructuredRetry
from rxkit.telemetry.metrics import Metrics
from rxkit.typed import TypedFunction, typed_function
from rxkit.types import ChatRequest, Message
from tests.providers import anthropic_server, gemini_server
from tests.providers.openai_server import OpenAIServer, Reply, chunk, sse_body


class City(BaseModel):
    city: str
    country: str


class Order(BaseModel):
    id: str
    items: list[City]
    urgent: bool = False


PROMPT = "Where is {{ landmark }}? {{ output_format }}"


def locate(provider: object, bus: EventBus, **options: object) -> TypedFunction[City]:
    return TypedFunction(PROMPT, returns=City, provider=provider, bus=bus, name="locate", **options)  # type: ignore[arg-type]


async def test_retry_with_feedback_invalid_first_answer_valid_second(bus: EventBus) -> None:
    metrics = Metrics(bus)
    mock = MockProvider(['{"city": "Paris"}', '```json\n{"city": "Paris", "country": "France"}\n```'])
    value = await locate(mock, bus).acall(landmark="the Eiffel Tower")
    assert value == City(city="Paris", country="France")
    assert len(mock.requests) == 2
    second = mock.requests[1].messages
    assert [m.role for m in second] == ["user", "assistant", "user"]
    assert second[1].text == '{"city": "Paris"}'  # the model sees its own answer
    assert "country: field required" in second[2].text  # and what was wrong with it
    bus.flush()
    retries = bus.events(StructuredRetry)
    assert [(e.function, e.attempt) for e in retries] == [("locate", 2)]  # type: ignore[attr-defined]
    results = bus.events(StructuredResult)
    assert [(e.ok, e.attempts, e.mode) for e in results] == [(True, 2, "prompt")]  # type: ignore[attr-defined]
    assert metrics.typed_functions() == [{"function": "locate", "valid": 1, "failed": 0, "retries": 1}]
    metrics.close()


async def test_after_the_last_retry_a_typed_error_carries_the_raw_output_and_errors(bus: EventBus) -> None:
    mock = MockProvider(['{"city": 1}', "I don't know."])
    with pytest.raises(StructuredOutputError) as caught:
        await locate(mock, bus, retries=1).acall(landmark="Atlantis")
    error = caught.value
    assert error.attempts == 2 and error.raw == "I don't know."
    assert error.errors == ["(top level): input should be a valid dictionary or instance of City"]
    assert "after 2 attempt(s)" in str(error)
    bus.flush()
    assert [e.ok for e in bus.events(StructuredResult)] == [False]  # type: ignore[attr-defined]


def test_stream_yields_partials_in_text_order_then_the_value(bus: EventBus) -> None:
    answer = '{"city": "Paris", "country": "France"}'
    mock = MockProvider([MockResponse(answer, chunk_size=4)])
    out = list(locate(mock, bus).stream(landmark="the Louvre"))
    assert out[-1] == City(city="Paris", country="France")
    dumps = [o.model_dump() for o in out[:-1]]
    assert {"city": "Pa", "country": None} in dumps or {"city": "P", "country": None} in dumps
    assert dumps.index({"city": "Paris", "country": None}) < dumps.index({"city": "Paris", "country": "Fr"})


async def test_astream_and_a_stub_with_a_docstring_prompt(bus: EventBus) -> None:
    @typed_function(provider=MockProvider([MockResponse("[2, 3, 5, 7]", chunk_size=2)]), bus=bus)
    def primes(below: int) -> list[int]:
        """The primes below {{ below }}. {{ output_format }}"""

    seen = [x async for x in primes.astream(below=10)]
    assert seen[-1] == [2, 3, 5, 7]
    assert seen[:-1] == [[], [2], [2, 3], [2, 3, 5], [2, 3, 5, 7]]  # each number once it is complete
    assert "Answer with a JSON array using this schema:\nint[]" in primes.render(below=10)[0].text


def test_provider_by_name_and_bad_arguments() -> None:
    echo = TypedFunction("Say {{ word }}", returns=str, provider="mock")
    assert echo(word="hi").startswith("Say hi")  # the mock echoes the prompt; str takes any text
    echo.close()
    with pytest.raises(ConfigError, match="mode must be one of"):
        TypedFunction("x", returns=str, mode="magic")
    with pytest.raises(ConfigError, match="no native structured output mode"):
        TypedFunction("x", returns=str, provider=MockProvider([]), mode="native")
    with pytest.raises(ConfigError, match="needs a return annotation"):

        @typed_function
        def nothing():  # type: ignore[no-untyped-def]
            """x"""


def test_output_format_is_compact() -> None:
    rendered = output_format(Order)
    assert rendered == (
        "Answer in JSON using this schema:\n{\n  id: string,\n  items: {\n    city: string,\n    country: string,\n"
        "  }[],\n  urgent: bool,\n}"
    )
    schema = json.dumps(Order.model_json_schema())
    assert approx_tokens(rendered) * 2 < approx_tokens(schema)


def test_the_prompt_gets_the_format_when_it_does_not_ask_for_it(bus: EventBus) -> None:
    f = TypedFunction("Where is {{ landmark }}?", returns=City, provider=MockProvider([]), bus=bus)
    assert f.render(landmark="x")[0].text == f"Where is x?\n\n{output_format(City)}"


# ---------------------------------------------------------------- native modes, over loopback HTTP

ANSWER = '{"city": "Paris", "country": "France"}'


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as server:
        yield server


def openai_stream(text: str, size: int = 5) -> bytes:
    parts = [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
    return sse_body([chunk({"role": "assistant", "content": ""}), *parts, chunk({}, "stop")])


async def test_openai_json_schema_request_body_and_streamed_partials(
    openai_server: OpenAIServer, bus: EventBus
) -> None:
    openai_server.push(Reply(stream=openai_stream(ANSWER)))
    provider = OpenAIProvider("gpt-4.1-mini", base_url=openai_server.url, api_key=openai_server.api_key)
    try:
        seen = [x async for x in locate(provider, bus).astream(landmark="the Louvre")]
    finally:
        await provider.aclose()
    assert seen[-1] == City(city="Paris", country="France") and len(seen) > 3
    body = openai_server.requests[0].body
    strict = {**City.model_json_schema(), "additionalProperties": False}  # OpenAI's strict structured outputs
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "locate", "schema": strict, "strict": True},
    }
    bus.flush()
    assert [e.mode for e in bus.events(StructuredResult)] == ["json_schema_strict"]  # type: ignore[attr-defined]


async def test_a_server_that_rejects_the_native_mode_gets_prompt_and_parse(
    openai_server: OpenAIServer, bus: EventBus
) -> None:
    rejected = {"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}
    openai_server.push(Reply(status=400, body=rejected), Reply(stream=openai_stream(ANSWER)))
    provider = OpenAIProvider("m", base_url=openai_server.url, api_key=openai_server.api_key, compatible=True)
    f = TypedFunction("Where is {{ landmark }}?", returns=City, provider=provider, bus=bus)
    try:
        assert await f.acall(landmark="x") == City(city="Paris", country="France")
    finally:
        await provider.aclose()
    first, second = (r.body for r in openai_server.requests)
    assert "response_format" in first and "response_format" not in second
    assert second["messages"][-1]["content"].endswith(output_format(City))


async def test_gemini_response_json_schema_request_body(bus: EventBus) -> None:
    stream = [
        gemini_server.chunk({"candidates": [{"content": {"parts": [{"text": ANSWER[:12]}], "role": "model"}}]}),
        gemini_server.chunk(
            {
                "candidates": [
                    {"content": {"parts": [{"text": ANSWER[12:]}], "role": "model"}, "finishReason": "STOP"}
                ],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 11, "totalTokenCount": 20},
            }
        ),
    ]
    async with gemini_server.GeminiServer() as server:
        server.push(gemini_server.Reply(events=stream))
        provider = GeminiProvider("gemini-2.5-flash", api_key=server.api_key, base_url=server.url)
        try:
            value = await locate(provider, bus).acall(landmark="the Louvre")
        finally:
            await provider.aclose()
    assert value == City(city="Paris", country="France")
    config = server.requests[0].body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": City.model_json_schema()}


async def test_anthropic_forced_tool_request_body(bus: EventBus) -> None:
    stream = anthropic_server.tool_stream("", [("toolu_01A", "locate", ANSWER)])
    async with anthropic_server.AnthropicServer() as server:
        server.push(anthropic_server.Reply(events=stream))
        provider = AnthropicProvider("claude-haiku-4-5", api_key=server.api_key, base_url=server.url)
        try:
            value = await locate(provider, bus).acall(landmark="the Louvre")
        finally:
            await provider.aclose()
    assert value == City(city="Paris", country="France")
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "locate"}
    assert body["tools"] == [
        {"name": "locate", "description": "Give the answer.", "input_schema": City.model_json_schema()}
    ]


async def test_anthropic_forced_tool_wraps_a_type_that_is_not_an_object(bus: EventBus) -> None:
    stream = anthropic_server.tool_stream("", [("toolu_01B", "primes", '{"value": [2, 3, 5]}')])
    async with anthropic_server.AnthropicServer() as server:
        server.push(anthropic_server.Reply(events=stream))
        provider = AnthropicProvider("claude-haiku-4-5", api_key=server.api_key, base_url=server.url)
        f = TypedFunction("Primes below 6", returns=list[int], provider=provider, bus=bus, name="primes")
        try:
            assert await f.acall() == [2, 3, 5]
        finally:
            await provider.aclose()
    schema = server.requests[0].body["tools"][0]["input_schema"]
    assert schema == {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"type": "integer"}}},
        "required": ["value"],
    }


# ---------------------------------------------------------------- the real local model (llama.cpp grammar)


@pytest.mark.local_model
async def test_local_model_json_schema_grammar_returns_a_city_and_streams(local_server: str, bus: EventBus) -> None:
    from rxkit.providers.local import LocalProvider

    provider = LocalProvider(base_url=local_server)
    f = TypedFunction(
        "Which city is the Eiffel Tower in, and in which country?",
        returns=City,
        provider=provider,
        bus=bus,
        temperature=0.0,
        max_tokens=60,
    )
    try:
        value = await f.acall()
        seen = [x async for x in f.astream()]
    finally:
        await provider.aclose()
    assert isinstance(value, City) and value.city and value.country  # the grammar makes it valid JSON of that shape
    assert seen[-1] == value  # same prompt, temperature 0: the streamed answer is the called one
    assert len(seen) > 2 and all(isinstance(x, City) for x in seen)
    bus.flush()
    assert {e.mode for e in bus.events(StructuredResult)} == {"json_object_schema"}  # type: ignore[attr-defined]


def test_leaving_a_sync_stream_early_cancels_the_call_and_leaves_no_thread(bus: EventBus) -> None:
    from rxkit.testing import no_leaks

    slow = MockResponse(ANSWER, chunk_size=2, chunk_latency=0.05)
    with no_leaks():
        for partial in locate(MockProvider([slow]), bus).stream(landmark="x"):
            assert isinstance(partial, City)
            break


def test_the_readme_example_runs_as_shown() -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    script = re.search(r"## Typed functions in a few lines\n\n```python\n(.*?)```", readme, re.S)
    assert script is not None
    result = subprocess.run(
        [sys.executable, "-c", script.group(1)], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "city='Paris' country='France'"
    assert lines[1] == "City(city=None, country=None)" and lines[-1] == "City(city='Paris', country='France')"


# ---------------------------------------------------------------- OpenAI strict mode


class Tagged(BaseModel):
    name: str
    labels: dict[str, str]  # free-form: strict mode cannot take it


async def test_openai_strict_schema_closes_objects_requires_every_field_and_makes_optional_ones_nullable(
    openai_server: OpenAIServer, bus: EventBus
) -> None:
    answer = '{"id": "A1", "items": [{"city": "Paris", "country": "France"}], "urgent": null}'  # null: left out
    openai_server.push(Reply(stream=openai_stream(answer)))
    provider = OpenAIProvider("gpt-4.1-mini", base_url=openai_server.url, api_key=openai_server.api_key)
    f = TypedFunction("Orders", returns=Order, provider=provider, bus=bus, name="orders")
    try:
        value = await f.acall()
    finally:
        await provider.aclose()
    assert value == Order(id="A1", items=[City(city="Paris", country="France")], urgent=False)  # null -> default
    assert f.strict and f.strict_problem is None
    spec = openai_server.requests[0].body["response_format"]["json_schema"]
    assert spec["strict"] is True and spec["name"] == "orders"
    assert spec["schema"] == {
        "$defs": {
            "City": {
                "properties": {
                    "city": {"title": "City", "type": "string"},
                    "country": {"title": "Country", "type": "string"},
                },
                "required": ["city", "country"],
                "title": "City",
                "type": "object",
                "additionalProperties": False,
            }
        },
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "items": {"items": {"$ref": "#/$defs/City"}, "title": "Items", "type": "array"},
            "urgent": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "title": "Urgent"},  # was: default false
        },
        "required": ["id", "items", "urgent"],
        "title": "Order",
        "type": "object",
        "additionalProperties": False,
    }


async def test_a_type_that_cannot_be_strict_is_sent_without_strict_and_says_why(
    openai_server: OpenAIServer, bus: EventBus
) -> None:
    openai_server.push(Reply(stream=openai_stream('{"name": "n", "labels": {"a": "b"}}')))
    provider = OpenAIProvider("gpt-4.1-mini", base_url=openai_server.url, api_key=openai_server.api_key)
    f = TypedFunction("Tag it", returns=Tagged, provider=provider, bus=bus, name="tag")
    try:
        assert await f.acall() == Tagged(name="n", labels={"a": "b"})
    finally:
        await provider.aclose()
    assert not f.strict
    assert f.strict_problem is not None and "properties/labels is a free-form object" in f.strict_problem
    assert openai_server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "tag", "schema": Tagged.model_json_schema()},
    }
    bus.flush()
    assert [e.mode for e in bus.events(StructuredResult)] == ["json_schema"]  # type: ignore[attr-defined]
    off = TypedFunction("Tag it", returns=City, provider=provider, strict=False)
    assert not off.strict and off.strict_problem is None  # strict=False: asked for, not a problem


def test_strict_schema_matches_openai_python_where_no_field_is_optional() -> None:
    """The port agrees with the official SDK's own transformation (openai is installed beside the bench extra)."""
    sdk = pytest.importorskip("openai.lib._pydantic")

    class Deep(BaseModel):
        name: str
        cities: list[City]
        best: City
        kind: Literal["a", "b"]

    from rxkit.structured import strict_json_schema

    assert strict_json_schema(Deep) == sdk.to_strict_json_schema(Deep)
    ours, theirs = strict_json_schema(Order), sdk.to_strict_json_schema(Order)
    assert ours["properties"]["urgent"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}], "title": "Urgent"}
    assert theirs["properties"]["urgent"] == {"type": "boolean", "default": False, "title": "Urgent"}  # not nullable
    assert {**ours, "properties": {}} == {**theirs, "properties": {}}


async def test_the_loopback_server_rejects_a_schema_that_is_not_strict_as_openai_does(
    openai_server: OpenAIServer, bus: EventBus
) -> None:
    """The check the strict schema passes above is real: the plain schema, sent as strict, is refused with 400."""
    openai_server.push(Reply(stream=openai_stream(ANSWER)))
    provider = OpenAIProvider("gpt-4.1-mini", base_url=openai_server.url, api_key=openai_server.api_key)
    request = ChatRequest(
        messages=[Message.user("x")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "o", "schema": Order.model_json_schema(), "strict": True},
        },
    )
    try:
        with pytest.raises(ProviderHTTPError, match="additionalProperties' is required to be supplied"):
            await provider.chat(request)
    finally:
        await provider.aclose()


# ---------------------------------------------------------------- Anthropic forced tool: partials as they stream


async def anthropic_partials(returns: object, arguments: str, name: str, bus: EventBus) -> list[object]:
    stream = anthropic_server.tool_stream("", [("toolu_01C", name, arguments)], pieces=7)
    async with anthropic_server.AnthropicServer() as server:
        server.push(anthropic_server.Reply(events=stream))
        provider = AnthropicProvider("claude-haiku-4-5", api_key=server.api_key, base_url=server.url)
        f = TypedFunction("Answer", returns=returns, provider=provider, bus=bus, name=name)
        try:
            return [x async for x in f.astream()]
        finally:
            await provider.aclose()


async def test_anthropic_forced_tool_streams_partials_from_input_json_delta(bus: EventBus) -> None:
    # The tool input arrives as '', '{"city', '": "Pa', 'ris", ', '"count', 'ry": "', 'France', '"}'
    seen = await anthropic_partials(City, ANSWER, "locate", bus)
    assert [x.model_dump() for x in seen[:-1]] == [  # type: ignore[attr-defined]
        {"city": None, "country": None},
        {"city": "Pa", "country": None},
        {"city": "Paris", "country": None},
        {"city": "Paris", "country": ""},  # '"count' is half a key: nothing new to show
        {"city": "Paris", "country": "France"},
    ]
    assert seen[-1] == City(city="Paris", country="France")
    bus.flush()
    assert [e.mode for e in bus.events(StructuredResult)] == ["forced_tool"]  # type: ignore[attr-defined]


async def test_anthropic_forced_tool_streams_partials_of_a_wrapped_type(bus: EventBus) -> None:
    seen = await anthropic_partials(list[int], '{"value": [2, 3, 5, 7, 11]}', "primes", bus)
    assert seen[-1] == [2, 3, 5, 7, 11]
    partials = seen[:-1]
    assert len(partials) > 3 and partials[-1] == [2, 3, 5, 7, 11]
    for before, after in itertools.pairwise(p or [] for p in partials):  # the list grows, a number at a time
        assert after[: len(before)] == before and len(after) >= len(before)
