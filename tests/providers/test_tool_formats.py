"""One tool format per provider: what ``rxkit.tools.to_*`` return is what the providers send.

The Gemini half runs over loopback HTTP: the loopback server refuses a
declaration whose ``parameters`` use a key outside Google's OpenAPI subset, as
the real API does, and accepts the public converter's output
(``parametersJsonSchema``) for the same schema.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, Field
from reactivex import operators as ops

from rxkit.elements import EndOfTurn
from rxkit.providers.anthropic import build_request as anthropic_request
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.gemini import build_request as gemini_request
from rxkit.providers.openai import OpenAIProvider
from rxkit.toolformats import gemini_schema
from rxkit.tools import from_gemini, to_anthropic, to_gemini, to_openai, tool
from rxkit.types import ChatRequest, Message, ToolDescriptor
from tests.providers.gemini_server import (
    TEXT_STREAM,
    TEXT_STREAM_TEXT,
    GeminiServer,
    Reply,
    check_declaration,
    check_generate_body,
)


class Place(BaseModel):
    city: str
    country: str | None = None


@tool
def forecast(
    place: Place,
    days: Annotated[int, Field(gt=0, le=14)] = 3,
    units: Literal["metric", "imperial"] = "metric",
    kind: Literal["daily"] = "daily",
) -> str:
    """Weather forecast for a place."""
    return f"{days} {kind} days of sun in {place.city} ({units})"


NOW = ToolDescriptor(name="now")  # no parameters, no description
TOOLS = [forecast.descriptor, NOW]


def test_the_schema_holds_keys_that_parameters_refuses() -> None:
    # The point of the loopback tests below: a plain pydantic-typed tool needs full JSON Schema.
    schema = forecast.descriptor.input_schema
    assert {"$defs", "additionalProperties"} <= set(schema)
    assert "exclusiveMinimum" in schema["properties"]["days"] and "const" in schema["properties"]["kind"]


def test_each_provider_sends_the_public_converters_output() -> None:
    request = ChatRequest(messages=[Message.user("weather?")], tools=TOOLS)
    openai = OpenAIProvider("gpt-4.1-mini", api_key="sk-loopback").build_request(request, stream=True)
    assert openai.body["tools"] == to_openai(TOOLS)
    assert anthropic_request(request.messages, {"model": "claude-sonnet-4-5"}, TOOLS)["tools"] == to_anthropic(TOOLS)
    assert gemini_request(request.messages, {}, TOOLS)["tools"] == to_gemini(TOOLS)


# ---------------------------------------------------------------- the loopback server's check


def _decl(**fields: Any) -> dict[str, Any]:
    return {"name": "f", **fields}


@pytest.mark.parametrize(
    ("schema", "key"),
    [
        ({"type": "object", "additionalProperties": False}, "additionalProperties"),
        ({"type": "object", "$defs": {"P": {"type": "object"}}}, "$defs"),
        ({"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}}, "$ref"),
        ({"type": "object", "properties": {"k": {"type": "string", "const": "x"}}}, "const"),
        ({"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}}}, "exclusiveMinimum"),
        ({"type": "object", "properties": {"a": {"type": "array", "items": {"oneOf": []}}}}, "oneOf"),
        ({"type": "object", "properties": {"x": {"anyOf": [{"type": "string", "$comment": ""}]}}}, "$comment"),
        ({"type": "object", "properties": {"x": {"type": ["string", "null"]}}}, "type"),
        ({"type": "object", "properties": {"x": {"type": "integer", "enum": [1, 2]}}}, "enum[0]"),
    ],
)
def test_parameters_refuses_keys_outside_the_openapi_subset(schema: dict[str, Any], key: str) -> None:
    problem = check_declaration(_decl(parameters=schema), "tools[0].function_declarations[0]")
    assert problem is not None and key in problem and "tools[0].function_declarations[0].parameters" in problem
    assert check_declaration(_decl(parametersJsonSchema=schema), "tools[0].function_declarations[0]") is None


def test_parameters_takes_the_openapi_subset() -> None:
    subset = {
        "type": "OBJECT",
        "title": "Args",
        "properties": {
            "city": {"type": "string", "description": "where", "default": "Paris", "nullable": True},
            "days": {"type": "integer", "minimum": 1, "maximum": 14, "format": "int32"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
        "required": ["city"],
        "propertyOrdering": ["city", "days", "tags", "either"],
    }
    assert check_declaration(_decl(parameters=subset), "d") is None


@pytest.mark.parametrize(
    ("decl", "words"),
    [
        ({"description": "no name"}, "name is required"),
        ({"name": "1st"}, "Invalid function name"),
        ({"name": "f", "parameters": {}, "parametersJsonSchema": {}}, "mutually exclusive"),
        ({"name": "f", "params": {}}, 'Unknown name "params"'),
        ({"name": "f", "parametersJsonSchema": {"type": "string"}}, "must describe an object"),
    ],
)
def test_declarations_are_checked(decl: dict[str, Any], words: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": [decl]}]}
    problem = check_generate_body(body)
    assert problem is not None and words in problem


# ---------------------------------------------------------------- over loopback HTTP


@pytest.fixture
async def server() -> AsyncIterator[GeminiServer]:
    async with GeminiServer() as s:
        yield s


async def _post(server: GeminiServer, tools: list[dict[str, Any]]) -> tuple[int, str]:
    body = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": tools}
    url = f"{server.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"x-goog-api-key": server.api_key}) as response,
    ):
        return response.status, await response.text()


async def test_the_public_converters_output_is_accepted_where_parameters_is_refused(server: GeminiServer) -> None:
    server.push(Reply(events=TEXT_STREAM))
    status, text = await _post(server, to_gemini(TOOLS))
    assert status == 200 and "Paris" in text
    # What the public to_gemini sent before: the schema simplified for ``parameters``. The subset
    # still lacks exclusiveMinimum and const, so the API refuses it before any model runs.
    server.push(Reply(events=TEXT_STREAM))
    old = [{"functionDeclarations": [{"name": d.name, "parameters": gemini_schema(d.input_schema)} for d in TOOLS]}]
    status, text = await _post(server, old)
    error = json.loads(text)["error"]
    assert status == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith('Invalid JSON payload received. Unknown name "exclusiveMinimum"')
    assert [r.body["tools"] for r in server.requests] == [to_gemini(TOOLS), old]


async def test_the_provider_sends_the_public_converters_output(server: GeminiServer) -> None:
    server.push(Reply(events=TEXT_STREAM))
    provider = GeminiProvider("gemini-2.5-flash", api_key=server.api_key, base_url=server.url)
    try:
        request = ChatRequest(messages=[Message.user("Weather in Paris?")], tools=TOOLS)
        out = await provider.stream(request).pipe(ops.to_list())
    finally:
        await provider.aclose()
    end = out[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None and end.response.text == TEXT_STREAM_TEXT
    [sent] = server.requests
    assert sent.body["tools"] == to_gemini(TOOLS)
    assert from_gemini(sent.body["tools"]) == TOOLS
