"""OpenAIProvider against a loopback server speaking the Chat Completions wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import ConfigError, ContentBlockedError
from rxkit.providers import Price, ProviderSpec, create_provider
from rxkit.providers.openai import OpenAIProvider, convert_messages
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderCallStarted, ProviderFirstToken
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, ImagePart, Message, TextPart, ToolCall, ToolDescriptor
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, recording, sse_body

WEATHER = ToolDescriptor(
    name="get_weather",
    description="Weather for a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


def make(server: OpenAIServer, bus: EventBus, **kw: Any) -> OpenAIProvider:
    kw.setdefault("api_key", API_KEY)
    return OpenAIProvider("gpt-4o-mini", base_url=server.url, compatible=False, bus=bus, **kw)


def ask(text: str = "What is the capital of France?", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message.system("Be brief."), Message.user(text)], **kw)


async def collect(provider: OpenAIProvider, request: ChatRequest) -> list[Any]:
    return await provider.stream(request).pipe(ops.to_list())


async def test_text_stream_with_usage_and_cost(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text")))
    async with ano_leaks():
        provider = make(server, bus)
        out = await collect(provider, ask())
        await provider.aclose()
    deltas = [e.text for e in out if isinstance(e, TextDelta)]
    assert deltas[:6] == ["The", " capital", " of", " France", " is", " Paris"]
    assert isinstance(out[-1], EndOfTurn)
    response = out[-1].response
    assert response.text == "".join(deltas)
    assert "🇫🇷" in response.text
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (14, 16)
    # gpt-4o-mini: $0.15 in / $0.60 out per million tokens (dated model id matched by prefix)
    assert response.cost.total == pytest.approx(14 * 0.15e-6 + 16 * 0.60e-6)
    assert response.ttft_s is not None and response.latency_s is not None
    assert 0 <= response.ttft_s <= response.latency_s
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    bus.flush()
    kinds = [type(e) for e in bus.events(ProviderCallStarted, ProviderFirstToken, ProviderCallCompleted)]
    assert kinds == [ProviderCallStarted, ProviderFirstToken, ProviderCallCompleted]
    done = bus.events(ProviderCallCompleted)[0]
    assert isinstance(done, ProviderCallCompleted)
    assert (done.input_tokens, done.output_tokens) == (14, 16)
    assert done.cost == pytest.approx(response.cost.total)


async def test_several_tool_calls_assembled_from_fragments(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("tools"), chunk_size=97))  # re-cut the bytes at odd places
    provider = make(server, bus)
    try:
        out = await collect(provider, ask("Weather and time in Paris?", tools=[WEATHER], tool_choice="auto"))
    finally:
        await provider.aclose()
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert calls == [
        ToolCall(id="call_8fJk2LmNq0", name="get_weather", arguments='{"city":"Paris, France","unit":"celsius"}'),
        ToolCall(id="call_Zx91PqR7tT", name="get_time", arguments='{"tz":"Europe/Paris"}'),
    ]
    assert json.loads(calls[0].arguments) == {"city": "Paris, France", "unit": "celsius"}
    response = out[-1].response
    assert response.finish_reason == "tool_calls"
    assert response.message.tool_calls == calls
    assert response.usage.cached_input_tokens == 1024
    # 156 uncached at $0.15/M + 1024 cached at $0.075/M + 52 out at $0.60/M
    assert response.cost.total == pytest.approx(156 * 0.15e-6 + 1024 * 0.075e-6 + 52 * 0.60e-6)
    body = server.requests[0].body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER.input_schema,
            },
        }
    ]
    assert body["tool_choice"] == "auto"


async def test_keepalive_comments_crlf_and_text_before_tool_call(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("keepalive_crlf"), chunk_size=5))
    provider = make(server, bus)
    try:
        out = await collect(provider, ask())
    finally:
        await provider.aclose()
    kinds = [type(e).__name__ for e in out]
    assert kinds == ["TextDelta", "TextDelta", "ToolCallElement", "EndOfTurn"]
    assert out[2].call == ToolCall(id="call_q1", name="lookup", arguments='{"q":"rx"}')
    assert out[-1].response.text == "Let me check."


async def test_llama_cpp_recorded_tool_call_quirk(server: OpenAIServer, bus: EventBus) -> None:
    """Recorded from llama-cpp-python's server: id and name repeated in every chunk, no usage."""
    server.push(Reply(stream=recording("llama_tool")))
    provider = OpenAIProvider("smollm2", base_url=server.url, api_key=API_KEY, bus=bus)
    assert provider.compatible and provider.name == "openai-compatible"
    try:
        out = await collect(provider, ask("Weather in Paris?", tools=[WEATHER], tool_choice="get_weather"))
    finally:
        await provider.aclose()
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].id == "call__0_get_weather_cmpl-d3c86382-1719-4eea-9690-2c7cea88962a"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    response = out[-1].response
    assert response.usage.input_tokens == 0 and response.usage.output_tokens == 0  # llama.cpp sends none
    assert response.usage.estimated  # counted, not reported
    assert response.cost is None  # a compatible server's model has no known price: not $0
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def _ollama_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A chunk as Ollama's /v1/chat/completions streams it (role and empty content repeated, fp_ollama)."""
    return {
        "id": "chatcmpl-18",
        "object": "chat.completion.chunk",
        "created": 1744446075,
        "model": "qwen2.5-coder:7b-instruct-q8_0",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", **delta}, "finish_reason": finish}],
    }


def _ollama_call(call_id: str, command: str, index: int | None, *, as_object: bool = False) -> dict[str, Any]:
    arguments: Any = {"command": command} if as_object else json.dumps({"command": command}, separators=(",", ":"))
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": "run_command", "arguments": arguments},
    }
    if index is not None:
        call["index"] = index
    return call


@pytest.mark.parametrize(
    "shape",
    [
        "each call whole in its own chunk, with an index",  # Ollama's stream as captured from 0.6
        "both calls in one chunk, no index",  # older Ollama: no index field
        "arguments as an object",  # servers that put the JSON object itself in arguments
    ],
)
async def test_ollama_shaped_tool_calls(shape: str, server: OpenAIServer, bus: EventBus) -> None:
    if shape.startswith("each"):
        chunks = [
            _ollama_chunk({"tool_calls": [_ollama_call("call_wteop8bt", "ls", 0)]}),
            _ollama_chunk({"tool_calls": [_ollama_call("call_rk2xye1l", "ls -l", 1)]}),
        ]
    else:
        as_object = shape.startswith("arguments")
        calls = [
            _ollama_call("call_wteop8bt", "ls", None, as_object=as_object),
            _ollama_call("call_rk2xye1l", "ls -l", None, as_object=as_object),
        ]
        chunks = [_ollama_chunk({"tool_calls": calls})]
    server.push(Reply(stream=sse_body([*chunks, _ollama_chunk({}, "tool_calls")])))
    provider = OpenAIProvider("qwen2.5-coder:7b-instruct-q8_0", base_url=server.url, api_key=API_KEY, bus=bus)
    try:
        out = await collect(provider, ask("List the files, twice.", tools=[WEATHER]))
    finally:
        await provider.aclose()
    calls = [(e.call.id, e.call.name, json.loads(e.call.arguments)) for e in out if isinstance(e, ToolCallElement)]
    assert calls == [
        ("call_wteop8bt", "run_command", {"command": "ls"}),
        ("call_rk2xye1l", "run_command", {"command": "ls -l"}),
    ]
    response = out[-1].response
    assert response.finish_reason == "tool_calls" and response.text == ""
    assert response.model == "qwen2.5-coder:7b-instruct-q8_0"


async def test_llama_cpp_recorded_text(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("llama_text"), chunk_size=64))
    provider = OpenAIProvider("smollm2", base_url=server.url, api_key=API_KEY, bus=bus)
    try:
        response = (await collect(provider, ask()))[-1].response
    finally:
        await provider.aclose()
    assert "Paris is the capital of France" in response.text
    assert "É" in response.text  # a two-byte UTF-8 character survives re-cutting
    assert response.finish_reason == "length"


async def test_vllm_usage_chunk_with_null_choices(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("vllm_text")))
    provider = OpenAIProvider(
        "qwen", base_url=server.url, api_key=API_KEY, bus=bus, prices={"Qwen/": Price(input=1.0, output=2.0)}
    )
    try:
        response = (await collect(provider, ask()))[-1].response
    finally:
        await provider.aclose()
    assert response.text == "Bonjour!"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 3)
    assert response.cost.total == pytest.approx(9e-6 + 6e-6)  # user prices apply to a compatible server


async def test_parameters_json_schema_seed_and_defaults(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=sse_body([chunk({"content": '{"city": "Paris"}'}, "stop")])))
    # strict: true takes a closed object with every property required (the loopback server checks it as OpenAI does)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    provider = make(server, bus, defaults={"temperature": 0.2, "max_tokens": 50, "top_p": 0.9})
    try:
        request = ask(
            seed=42,
            temperature=0.0,
            stop=["\n\n"],
            response_format={"type": "json_schema", "schema": schema, "name": "place", "strict": True},
        )
        await collect(provider, request)
    finally:
        await provider.aclose()
    body = server.requests[0].body
    assert body["seed"] == 42
    assert body["temperature"] == 0.0  # the request wins over the provider default
    assert body["top_p"] == 0.9 and body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["stop"] == ["\n\n"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }


async def test_json_mode_and_extra_params_pass_through(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=sse_body([chunk({"content": "{}"}, "stop")])))
    provider = OpenAIProvider("m", base_url=server.url, api_key=API_KEY, bus=bus, defaults={"max_tokens": 7})
    try:
        await collect(provider, ask(response_format={"type": "json_object"}, extra={"logit_bias": {"50256": -100}}))
    finally:
        await provider.aclose()
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["logit_bias"] == {"50256": -100}
    assert body["max_tokens"] == 7  # compatible servers get max_tokens


async def test_non_streaming_chat(server: OpenAIServer, bus: EventBus) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 10,
            "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    server.push(Reply(body=completion))
    async with ano_leaks():
        provider = make(server, bus)
        response = await provider.chat(ask(tools=[WEATHER]))
        await provider.aclose()
    assert response.text == "Checking."
    assert response.message.tool_calls == [ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')]
    assert response.usage.total_tokens == 30
    assert response.cost.total == pytest.approx(20 * 0.15e-6 + 10 * 0.6e-6)
    assert "stream" not in server.requests[0].body and "stream_options" not in server.requests[0].body


async def test_content_filter_is_a_typed_error(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=sse_body([chunk({"content": "Sure, here"}), chunk({}, "content_filter")])))
    provider = make(server, bus)
    try:
        with pytest.raises(ContentBlockedError) as info:
            await collect(provider, ask())
    finally:
        await provider.aclose()
    assert info.value.partial == "Sure, here"


async def test_conversation_round_trip_with_tool_results_and_images(server: OpenAIServer, bus: EventBus) -> None:
    call = ToolCall(id="call_9", name="get_weather", arguments='{"city":"Rome"}')
    messages = [
        Message.user("Weather in Rome?"),
        Message.assistant("", [call]),
        Message.tool("call_9", '{"temp": 21}', name="get_weather"),
        Message(role="user", content=[TextPart(text="And this picture?"), ImagePart(data="iVBORw0KGgo=")]),
    ]
    server.push(Reply(stream=sse_body([chunk({"content": "A cat."}, "stop")])))
    provider = make(server, bus)
    try:
        await collect(provider, ChatRequest(messages=messages))
    finally:
        await provider.aclose()
    sent = server.requests[0].body["messages"]
    assert sent == convert_messages(messages)
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_9", "content": '{"temp": 21}'}
    assert sent[3]["content"] == [
        {"type": "text", "text": "And this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_registry_builds_both_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-abcdefghijkl")
    p = create_provider(ProviderSpec(type="openai", model="gpt-4o", extra={"max_retries": 5}))
    assert isinstance(p, OpenAIProvider)
    assert (p.name, p.base_url, p.api_key, p.options.max_retries) == (
        "openai",
        "https://api.openai.com/v1",
        "sk-from-env-abcdefghijkl",
        5,
    )
    assert not p.compatible and p.cost  # priced from the OpenAI table
    local = create_provider({"type": "openai-compatible", "model": "smollm2", "base_url": "http://127.0.0.1:9/v1"})
    assert isinstance(local, OpenAIProvider)
    assert local.compatible and local.name == "openai-compatible"
    assert local.api_key is None  # OPENAI_API_KEY is never sent to another server
    assert local.pricing == {}
    with pytest.raises(ConfigError, match="base_url"):
        create_provider({"type": "openai-compatible", "model": "x"})
    with pytest.raises(ConfigError, match="unknown option"):
        create_provider(ProviderSpec(type="openai", model="gpt-4o", extra={"max_retrys": 5}))
    keyed = create_provider(ProviderSpec(type="openai", model="gpt-4o", api_key_env="MY_KEY"))
    assert isinstance(keyed, OpenAIProvider) and keyed.api_key is None


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = OpenAIProvider("gpt-4o")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        p.build_request(ask(), stream=True)


async def test_refusal_is_streamed_as_text(server: OpenAIServer, bus: EventBus) -> None:
    server.push(
        Reply(
            stream=sse_body(
                [
                    chunk({"role": "assistant", "content": None, "refusal": ""}),
                    chunk({"refusal": "I'm sorry, "}),
                    chunk({"refusal": "I can't help."}),
                    chunk({}, "stop"),
                ]
            )
        )
    )
    provider = make(server, bus)
    try:
        out = await collect(provider, ask(response_format={"type": "json_object"}))
    finally:
        await provider.aclose()
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["I'm sorry, ", "I can't help."]
    assert out[-1].response.text == "I'm sorry, I can't help."


async def test_stream_usage_can_be_turned_off(server: OpenAIServer, bus: EventBus) -> None:
    provider = OpenAIProvider("m", base_url=server.url, api_key=API_KEY, bus=bus, stream_usage=False)
    try:
        out = await collect(provider, ask())
    finally:
        await provider.aclose()
    assert out[-1].response.text == "ok"
    assert "stream_options" not in server.requests[0].body and server.requests[0].body["stream"] is True


def test_a_model_is_chosen_when_none_is_named() -> None:
    """A key alone is enough for OpenAI itself; an OpenAI-compatible server keeps its own model."""
    direct = OpenAIProvider(api_key=API_KEY)
    assert direct.model == "gpt-4.1-mini" == direct.build_request(ask(), stream=True).body["model"]
    assert create_provider(ProviderSpec(type="openai", api_key=API_KEY)).model == "gpt-4.1-mini"
    assert direct.price() is not None  # and its calls are priced
    compatible = OpenAIProvider(base_url="http://127.0.0.1:8080/v1")
    assert compatible.model == "" and compatible.build_request(ask(), stream=True).body["model"] == "default"
    named = OpenAIProvider("gpt-5-mini", api_key=API_KEY)
    assert named.build_request(ask(), stream=True).body["model"] == "gpt-5-mini"
