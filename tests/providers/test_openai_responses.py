"""The OpenAI Responses API provider against a loopback server driven by recorded event sequences:
text, reasoning summaries, tools and tool loops (stateless and with previous_response_id), structured
output, errors, retries, and the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, ReasoningDelta, TextDelta, ToolCallElement
from rxkit.errors import AuthenticationError, ConfigError, ProviderHTTPError, ProviderServerError, StreamError
from rxkit.graph import Graph
from rxkit.operators import tool_loop
from rxkit.providers import create_provider, provider_types
from rxkit.providers.openai_responses import OpenAIResponsesProvider, build_request
from rxkit.telemetry.events import EventBus, ProviderCallCompleted
from rxkit.testing import ano_leaks
from rxkit.tools import tool
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message, ReasoningPart, ToolDescriptor
from tests.providers.openai_responses_server import Reply, ResponsesServer, recording

TEXT = "The capital of France is Paris — « Paris » 🇫🇷."
ENCRYPTED = "gAAAAABovBOrEncryptedReasoningBlobLoopback0000000000=="


@tool
def get_weather(location: str, unit: str = "celsius") -> str:
    """The weather for a place."""
    return f"18 degrees {unit} in {location}"


@tool
def get_time(timezone: str) -> str:
    """The local time in a timezone."""
    return f"14:05 in {timezone}"


async def answer(provider: OpenAIResponsesProvider, request: ChatRequest) -> Any:
    """The streamed answer's ChatResponse."""
    out = await provider.stream(request).pipe(ops.to_list())
    return out[-1].response


@pytest.fixture
async def server() -> AsyncIterator[ResponsesServer]:
    async with ResponsesServer() as s:
        yield s


@pytest.fixture
async def provider(server: ResponsesServer, bus: EventBus) -> AsyncIterator[OpenAIResponsesProvider]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    p = OpenAIResponsesProvider(
        "gpt-4.1-mini", api_key=server.api_key, base_url=server.url + "/v1", bus=bus, sleep=sleep, backoff_base=0.25
    )
    p.delays = delays  # type: ignore[attr-defined]
    yield p
    await p.aclose()


async def test_text_streams_with_usage_cost_and_id(server: ResponsesServer, provider: Any, bus: EventBus) -> None:
    server.push(Reply(events=recording("text")))
    completed: list[ProviderCallCompleted] = []
    bus.subscribe(lambda e: completed.append(e) if isinstance(e, ProviderCallCompleted) else None)
    request = ChatRequest(messages=[Message.system("Be brief."), Message.user("Capital of France?")], temperature=0.2)
    out = await provider.stream(request).pipe(ops.to_list())
    deltas = [e.text for e in out if isinstance(e, TextDelta)]
    assert len(deltas) == 4 and "".join(deltas) == TEXT
    response = out[-1].response
    assert isinstance(out[-1], EndOfTurn) and response.text == TEXT and response.finish_reason == "stop"
    assert response.response_id == "resp_68b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (14, 12)
    assert response.model == "gpt-4.1-mini-2025-04-14"
    assert response.cost.total == pytest.approx((14 * 0.40 + 12 * 1.60) / 1e6)
    assert completed and completed[0].output_tokens == 12
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/responses"
    assert body == {
        "model": "gpt-4.1-mini",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]}],
        "instructions": "Be brief.",
        "temperature": 0.2,
        "store": False,
        "stream": True,
    }


async def test_reasoning_summaries_and_tool_calls(server: ResponsesServer, provider: Any) -> None:
    server.push(Reply(events=recording("reasoning_tools"), chunk_size=97))  # cut anywhere, even inside UTF-8
    weather = ToolDescriptor(name="get_weather", input_schema={"type": "object", "properties": {}})
    request = ChatRequest(
        messages=[Message.user("Weather and time in Paris?")], tools=[weather], extra={"reasoning": "low"}
    )
    out = await provider.stream(request).pipe(ops.to_list())
    reasoning = "".join(e.text for e in out if isinstance(e, ReasoningDelta))
    assert reasoning == (
        "**Looking up weather**\n\nThe user wants Paris weather; I'll call get_weather."
        "\n\n**Checking time**\n\nAnd the local time."
    )
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_Jx4sBqN0tNc1hD3aVq8rZ2kP", "get_weather", '{"location":"Paris, France","unit":"celsius"}'),
        ("call_Qw9eR7tY5uI3oP1aS2dF4gH6", "get_time", '{"timezone":"Europe/Paris"}'),
    ]
    response = out[-1].response
    assert response.finish_reason == "tool_calls" and response.text == ""
    assert response.usage.reasoning_tokens == 128 and response.usage.cached_input_tokens == 64
    assert response.usage.output_tokens == 220  # reasoning included, and billed at the output rate:
    assert response.cost.output_cost == pytest.approx(220 * 2.00 / 1e6)  # gpt-5-mini
    part = response.message.content[0]
    assert part == ReasoningPart(
        text=reasoning,
        data=ENCRYPTED,
        id="rs_68b1c3ab0f2c8190a1b2c3d4e5f60718293a4b5c6d7e8f90",
        source="openai-responses",
    )
    body = server.requests[0].body
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["include"] == ["reasoning.encrypted_content"] and body["store"] is False
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "",
            "parameters": weather.input_schema,
            "strict": False,
        }
    ]


async def test_stateless_tool_loop_passes_reasoning_and_calls_back(server: ResponsesServer, provider: Any) -> None:
    server.push(Reply(events=recording("reasoning_tools")), Reply(events=recording("text")))
    turn = Turn(Message.user("Weather and time in Paris?"))
    turn.request = ChatRequest(messages=[turn.user], extra={"reasoning": "low"})
    out = await Graph.chain(tool_loop(provider, [get_weather, get_time])).arun([turn])
    assert out[-1].response.text == TEXT
    second = server.requests[1].body["input"]  # accepted: every output answers a call sent with it
    assert [item.get("type", "message") for item in second] == [
        "message",
        "reasoning",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert second[1]["encrypted_content"] == ENCRYPTED and second[1]["id"].startswith("rs_")
    assert second[4] == {
        "type": "function_call_output",
        "call_id": "call_Jx4sBqN0tNc1hD3aVq8rZ2kP",
        "output": "18 degrees celsius in Paris, France",
    }


async def test_previous_response_id_sends_only_the_new_messages(server: ResponsesServer, bus: EventBus) -> None:
    provider = OpenAIResponsesProvider(
        "gpt-4.1-mini", api_key=server.api_key, base_url=server.url + "/v1", bus=bus, store=True
    )
    try:
        server.push(Reply(events=recording("text")), Reply(events=recording("text")))
        first = await answer(provider, ChatRequest(messages=[Message.user("Capital of France?")]))
        assert server.requests[0].body["store"] is True
        history = [Message.user("Capital of France?"), first.message, Message.user("And of Italy?")]
        await answer(provider, ChatRequest(messages=history, extra={"previous_response_id": first.response_id}))
        body = server.requests[1].body
        assert body["previous_response_id"] == first.response_id and body["store"] is True
        assert body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "And of Italy?"}]}]
        with pytest.raises(ProviderHTTPError, match="Previous response with id 'resp_gone' not found") as caught:
            await answer(provider, ChatRequest(messages=history, extra={"previous_response_id": "resp_gone"}))
        assert caught.value.status == 400
    finally:
        await provider.aclose()


async def test_failed_response_and_error_event_are_typed_errors(server: ResponsesServer, provider: Any) -> None:
    server.push(Reply(events=recording("failed")))
    with pytest.raises(ProviderServerError, match="The model produced invalid content") as caught:
        await provider.stream(ChatRequest(messages=[Message.user("x")])).pipe(ops.to_list())
    assert caught.value.partial == "Partial answer"
    server.push(Reply(events=recording("error")))
    with pytest.raises(StreamError, match=r"Something went wrong \(ERR_SOMETHING\)"):
        await answer(provider, ChatRequest(messages=[Message.user("x")]))


async def test_http_errors_retry_and_auth(server: ResponsesServer, provider: Any) -> None:
    limited = {
        "error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    }
    server.push(Reply(status=429, body=limited, headers={"retry-after": "2"}), Reply(events=recording("text")))
    response = await answer(provider, ChatRequest(messages=[Message.user("x")]))
    assert response.text == TEXT and provider.delays == [2.0]
    bad = OpenAIResponsesProvider("gpt-4.1-mini", api_key="sk-wrong-key-0000000000", base_url=server.url + "/v1")
    try:
        with pytest.raises(AuthenticationError, match="Incorrect API key"):
            await answer(bad, ChatRequest(messages=[Message.user("x")]))
    finally:
        await bad.aclose()


async def test_incomplete_response_ends_with_length(server: ResponsesServer, provider: Any) -> None:
    server.push(Reply(events=recording("incomplete")))
    response = await answer(provider, ChatRequest(messages=[Message.user("A story")], max_tokens=4))
    assert response.text == "Once upon a time" and response.finish_reason == "length"
    assert server.requests[0].body["max_output_tokens"] == 4


async def test_non_streaming_chat_reads_a_response_object(server: ResponsesServer, bus: EventBus) -> None:
    body = {
        "id": "resp_plain",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1-mini-2025-04-14",
        "output": [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 2,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 7,
        },
    }
    server.push(Reply(body=body))
    provider = OpenAIResponsesProvider("gpt-4.1-mini", api_key=server.api_key, base_url=server.url + "/v1", bus=bus)
    async with ano_leaks():
        try:
            response = await provider.chat(ChatRequest(messages=[Message.user("x")]))
        finally:
            await provider.aclose()
    assert "stream" not in server.requests[0].body
    assert response.text == "Paris." and response.usage.output_tokens == 2 and response.response_id == "resp_plain"


def test_structured_output_and_parameters() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    body = build_request([Message.user("x")], {"model": "m", "response_format": fmt, "tool_choice": "get_weather"})
    assert body["text"] == {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    short = build_request(
        [Message.user("x")], {"model": "m", "response_format": {"type": "json_schema", "schema": schema}}
    )
    assert short["text"]["format"]["name"] == "response"
    with pytest.raises(ConfigError, match="effort name"):
        build_request([Message.user("x")], {"model": "m", "reasoning": 2048})
    with pytest.raises(ConfigError, match="no stop sequences"):
        build_request([Message.user("x")], {"model": "m", "stop": ["END"]})


def test_registered_and_listed() -> None:
    assert "openai-responses" in provider_types()
    p = create_provider({"type": "openai-responses", "model": "gpt-5-mini", "api_key": "sk-test-0000000000000"})
    assert isinstance(p, OpenAIResponsesProvider) and p.model == "gpt-5-mini"
