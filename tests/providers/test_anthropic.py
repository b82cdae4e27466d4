"""The Anthropic Messages provider: request building, stream parsing, and the
provider end to end against a loopback server speaking the documented wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from reactivex import Observer
from reactivex import operators as ops

from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallDelta, ToolCallElement
from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ContentBlockedError,
    MalformedEventError,
    ProviderHTTPError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
    ToolArgumentsError,
)
from rxkit.providers import create_provider
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers.anthropic import AnthropicProvider, apply_event, build_request, error_from_body
from rxkit.sse import SSEDecoder
from rxkit.telemetry.events import (
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    ProviderFirstToken,
)
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, ImagePart, Message, TextPart, ToolCall, ToolDescriptor
from tests.providers.anthropic_server import (
    MULTI_TOOL_CALLS,
    MULTI_TOOL_STREAM,
    TEXT_STREAM,
    TEXT_STREAM_TEXT,
    AnthropicServer,
    Reply,
    check_messages_body,
    sse,
)

WEATHER = ToolDescriptor(
    name="get_weather",
    description="Weather for a place",
    input_schema={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


def parse(blocks: list[str], chunk: int | None = None) -> tuple[StreamAccumulator, list[Element], bool]:
    """Run recorded SSE blocks through the real SSE decoder and :func:`apply_event`."""
    data = "".join(blocks).encode()
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    decoder, acc, out, done = SSEDecoder(), StreamAccumulator("anthropic"), [], False
    acc.observers = [Observer(out.append)]
    for piece in pieces:
        for event in decoder.feed(piece):
            done = apply_event(acc, json.loads(event.data)) or done
    return acc, out, done


def feed(acc: StreamAccumulator, event: dict[str, object]) -> bool:
    return apply_event(acc, json.loads(json.dumps(event)))


# ---------------------------------------------------------------- request body


def test_system_prompt_is_a_top_level_field_and_roles_alternate() -> None:
    messages = [
        Message.system("You are terse."),
        Message.user("Hi"),
        Message.user("Are you there?"),
        Message.system("Answer in English."),
        Message.assistant("Yes."),
        Message.assistant("Still here."),
        Message.user("Good"),
    ]
    body = build_request(messages, {"model": "claude-haiku-4-5", "max_tokens": 100})
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "text", "text": "Are you there?"},
    ]
    assert body["messages"][1]["content"][1] == {"type": "text", "text": "Still here."}
    assert body["stream"] is True and body["max_tokens"] == 100
    assert check_messages_body(body) is None


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks() -> None:
    calls = [
        ToolCall(id="toolu_1", name="get_weather", arguments='{"location": "Paris"}'),
        ToolCall(id="toolu_2", name="get_weather", arguments='{"location": "Oslo"}'),
    ]
    messages = [
        Message.user("Weather in Paris and Oslo?"),
        Message.assistant("Checking.", calls),
        Message.tool("toolu_1", "18C", name="get_weather"),
        Message.tool("toolu_2", "boom", name="get_weather", is_error=True),
        Message.user("Thanks, and summarise."),
    ]
    body = build_request(messages, {"model": "m", "tool_choice": "auto"}, [WEATHER])
    assistant, results = body["messages"][1], body["messages"][2]
    assert assistant["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"location": "Paris"},
    }
    # both results and the follow-up text are one user turn, results first
    assert results["role"] == "user"
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
    assert results["content"][1] == {
        "type": "tool_result",
        "tool_use_id": "toolu_2",
        "content": "boom",
        "is_error": True,
    }
    assert body["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER.input_schema, "description": "Weather for a place"}
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert check_messages_body(body) is None


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice: str, wire: dict[str, str]) -> None:
    body = build_request([Message.user("x")], {"model": "m", "tool_choice": choice}, [WEATHER])
    assert body["tool_choice"] == wire


def test_parameters_map_pass_through_or_drop() -> None:
    params = {
        "model": "m",
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "response_format": {"type": "json_object"},
        "top_k": 40,
        "metadata": {"user_id": "u1"},
        "tool_choice": "auto",  # no tools: nothing to choose from, so left out
    }
    body = build_request([Message.user("x")], params)
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.2 and body["top_p"] == 0.9
    assert body["top_k"] == 40 and body["metadata"] == {"user_id": "u1"}
    assert "seed" not in body and "response_format" not in body and "tool_choice" not in body
    assert body["max_tokens"] == 4096  # required by the API: a default is always sent


def test_images_become_image_blocks() -> None:
    message = Message(
        role="user",
        content=[
            TextPart(text="What is this?"),
            ImagePart(data="iVBORw0KGgo=", mime_type="image/png"),
            ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
            ImagePart(url="https://example.com/cat.webp"),
        ],
    )
    blocks = build_request([message], {"model": "m"})["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}
    assert blocks[3]["source"] == {"type": "url", "url": "https://example.com/cat.webp"}


def test_prompt_cache_marks_system_and_tools() -> None:
    body = build_request(
        [Message.system("long rules"), Message.user("x")], {"model": "m", "prompt_cache": True}, [WEATHER]
    )
    assert body["system"] == [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "prompt_cache" not in body
    assert check_messages_body(body) is None


def test_bad_input_gets_typed_errors() -> None:
    bad_call = Message.assistant("", [ToolCall(id="t", name="f", arguments="{not json")])
    with pytest.raises(ToolArgumentsError, match="not JSON"):
        build_request([Message.user("x"), bad_call], {"model": "m"})
    audio = Message(role="user", content=[{"type": "audio", "data": "AAAA"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="audio"):
        build_request([audio], {"model": "m"})


# ---------------------------------------------------------------- stream parsing


@pytest.mark.parametrize("chunk", [None, 1, 7, 1460])
def test_text_stream_in_any_chunking(chunk: int | None) -> None:
    acc, out, done = parse(TEXT_STREAM, chunk)
    assert done and all(isinstance(e, TextDelta) for e in out)
    assert "".join(e.text for e in out) == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert acc.finish_reason == "stop" and acc.model == "claude-sonnet-4-5-20250929"
    assert (acc.input_tokens, acc.output_tokens, acc.cached_input_tokens) == (25, 15, 0)


def test_several_tool_calls_assembled_from_many_fragments() -> None:
    acc, out, _ = parse(MULTI_TOOL_STREAM, 13)
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert [(c.id, c.name, c.arguments) for c in calls] == MULTI_TOOL_CALLS
    assert json.loads(calls[2].arguments)["query"] == "Zürich 🏔"
    # each call comes out as its block closes, after the text
    kinds = [type(e).__name__ for e in out]
    assert kinds.index("ToolCallElement") > max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert acc.finish_reason == "tool_calls" and acc.partial == "Let me check those for you."


def test_input_json_delta_streams_as_tool_call_deltas_before_the_call() -> None:
    _, out, _ = parse(MULTI_TOOL_STREAM, 13)
    for call_id, name, arguments in MULTI_TOOL_CALLS:
        deltas = [e for e in out if isinstance(e, ToolCallDelta) and e.call_id == call_id]
        assert len(deltas) > 3 and all(d.name == name for d in deltas)
        assert "".join(d.arguments for d in deltas) == arguments  # the fragments, as they came (empty ones skipped)
        whole = next(i for i, e in enumerate(out) if isinstance(e, ToolCallElement) and e.call.id == call_id)
        assert out.index(deltas[-1]) < whole  # each fragment before the assembled call


def test_prompt_cache_counts_reach_usage() -> None:
    acc, _, _ = parse(MULTI_TOOL_STREAM)
    assert acc.cached_input_tokens == 1800 and acc.cache_write_tokens == 120
    assert acc.input_tokens == 40 + 120 + 1800  # uncached + cache writes + cache reads
    assert acc.output_tokens == 96


def test_message_delta_usage_replaces_cumulative_counts() -> None:
    acc = StreamAccumulator("anthropic")
    feed(acc, {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}})
    usage = {"output_tokens": 9, "input_tokens": None}
    feed(acc, {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": usage})
    assert (acc.input_tokens, acc.output_tokens, acc.finish_reason) == (5, 9, "length")


def test_tool_use_without_deltas_keeps_its_start_input() -> None:
    acc = StreamAccumulator("anthropic")
    block = {"type": "tool_use", "id": "toolu_9", "name": "now", "input": {"tz": "UTC"}}
    feed(acc, {"type": "content_block_start", "index": 0, "content_block": block})
    feed(acc, {"type": "content_block_stop", "index": 0})
    assert acc.tool_calls == [ToolCall(id="toolu_9", name="now", arguments='{"tz": "UTC"}')]


def test_pings_thinking_and_unknown_events_are_ignored() -> None:
    acc = StreamAccumulator("anthropic")
    assert not feed(acc, {"type": "ping"})
    feed(acc, {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    feed(acc, {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}})
    feed(acc, {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "x"}})
    feed(acc, {"type": "content_block_stop", "index": 0})
    feed(acc, {"type": "brand_new_event", "x": 1})
    assert acc.partial == "" and acc.tool_calls == []


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("overloaded_error", ProviderServerError, 529),
        ("api_error", ProviderServerError, 500),
        ("rate_limit_error", RateLimitError, 429),
        ("authentication_error", AuthenticationError, 401),
        ("invalid_request_error", ProviderHTTPError, 400),
    ],
)
def test_error_event_maps_to_the_error_tree(kind: str, cls: type, status: int) -> None:
    acc = StreamAccumulator("anthropic")
    feed(acc, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Par"}})
    with pytest.raises(cls) as info:
        feed(acc, {"type": "error", "error": {"type": kind, "message": "Overloaded"}})
    assert info.value.status == status and info.value.partial == "Par" and info.value.provider == "anthropic"
    assert kind in str(info.value)


def test_refusal_is_content_blocked() -> None:
    acc = StreamAccumulator("anthropic")
    with pytest.raises(ContentBlockedError, match="declined"):
        feed(acc, {"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 3}})


def test_events_missing_fields_raise_for_the_caller_to_report() -> None:
    acc = StreamAccumulator("anthropic")
    with pytest.raises(KeyError):
        feed(acc, {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta"}})
    with pytest.raises(KeyError):
        feed(
            acc, {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{"}}
        )


def test_http_error_bodies_map_by_type() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    err = error_from_body("anthropic", body, 529)
    assert isinstance(err, ProviderServerError) and err.status == 529 and "Overloaded" in str(err)
    denied = {"type": "error", "error": {"type": "permission_error"}}
    assert isinstance(error_from_body("anthropic", denied, 403), AuthenticationError)
    assert type(error_from_body("anthropic", "<html>bad gateway</html>", 502)) is ProviderServerError


# ---------------------------------------------------------------- end to end, over loopback HTTP

QUESTION = ChatRequest(messages=[Message.system("Answer briefly."), Message.user("What is the capital of France?")])


@pytest.fixture
async def server() -> AsyncIterator[AnthropicServer]:
    async with AnthropicServer() as s:
        yield s


@pytest.fixture
async def provider(server: AnthropicServer, bus: EventBus) -> AsyncIterator[AnthropicProvider]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:  # record backoff instead of waiting it out
        delays.append(seconds)

    p = AnthropicProvider(
        "claude-sonnet-4-5",
        api_key=server.api_key,
        base_url=server.url,
        bus=bus,
        backoff_base=0.001,
        retry_jitter=0,
        sleep=sleep,
    )
    p.delays = delays  # type: ignore[attr-defined]
    yield p
    await p.aclose()


async def collect(provider: AnthropicProvider, request: ChatRequest = QUESTION) -> list[Element]:
    return await provider.stream(request).pipe(ops.to_list())


async def test_streams_text_with_usage_cost_timing_and_events(
    server: AnthropicServer, provider: AnthropicProvider, bus: EventBus
) -> None:
    server.push(Reply(events=TEXT_STREAM, delay=0.001))
    async with ano_leaks():
        out = await collect(provider)
        await provider.aclose()
    *deltas, end = out
    assert all(isinstance(e, TextDelta) for e in deltas) and len(deltas) == 3
    assert "".join(e.text for e in deltas) == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert isinstance(end, EndOfTurn) and end.response is not None
    response = end.response
    assert response.text == TEXT_STREAM_TEXT and response.finish_reason == "stop"
    assert response.model == "claude-sonnet-4-5-20250929" and response.provider == "anthropic"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 15)
    assert response.cost.total == pytest.approx((25 * 3.00 + 15 * 15.00) / 1e6)
    assert response.ttft_s is not None and 0 <= response.ttft_s <= response.latency_s  # type: ignore[operator]
    # what went over the wire
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == server.api_key and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "Answer briefly." and sent.body["stream"] is True
    assert sent.body["model"] == "claude-sonnet-4-5" and sent.body["messages"][0]["role"] == "user"
    # events on the bus, and no key in any of them
    kinds = [type(e) for e in bus.events()]
    assert kinds == [ProviderCallStarted, ProviderFirstToken, ProviderCallCompleted]
    completed = bus.events(ProviderCallCompleted)[0]
    assert completed.output_tokens == 15 and completed.cost == pytest.approx(response.cost.total)  # type: ignore[attr-defined]
    assert all(server.api_key not in repr(e) for e in bus.events())


async def test_several_tool_calls_split_across_bytes_and_pings(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    with_comments = [e for block in MULTI_TOOL_STREAM for e in (block, ": keep-alive\n\n")]  # as proxies add
    server.push(Reply(events=with_comments, chunk_size=7))  # cuts inside UTF-8 sequences too
    tools = [ToolDescriptor(name=name) for _, name, _ in MULTI_TOOL_CALLS]
    out = await collect(provider, ChatRequest(messages=[Message.user("go")], tools=tools, tool_choice="required"))
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert [(c.id, c.name, c.arguments) for c in calls] == MULTI_TOOL_CALLS
    response = out[-1].response  # type: ignore[attr-defined]
    assert response.finish_reason == "tool_calls" and response.message.tool_calls == calls
    assert response.usage.cached_input_tokens == 1800 and response.usage.input_tokens == 1960
    assert response.usage.cache_write_tokens == 120
    # priced as the model the server reports (claude-haiku-4-5-...): 40 uncached input tokens at $1.00/M,
    # 120 written to the cache at $1.25/M (1.25x), 1800 read from it at $0.10/M, 96 output at $5.00/M
    expected = (40 * 1.00 + 120 * 1.25 + 1800 * 0.10 + 96 * 5.00) / 1e6
    assert response.cost.total == pytest.approx(expected)
    assert server.requests[0].body["tool_choice"] == {"type": "any"}


async def test_tool_round_trip_is_accepted_by_the_server(server: AnthropicServer, provider: AnthropicProvider) -> None:
    server.push(Reply(events=MULTI_TOOL_STREAM), Reply(events=TEXT_STREAM))
    out = await collect(provider, QUESTION.model_copy(update={"tools": [ToolDescriptor(name="get_weather")]}))
    first = out[-1].response  # type: ignore[attr-defined]
    follow_up = [*QUESTION.messages, first.message, *(Message.tool(c.id, "ok") for c in first.message.tool_calls)]
    second = await collect(provider, ChatRequest(messages=follow_up))
    assert second[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    results = server.requests[1].body["messages"][2]["content"]
    assert [b["tool_use_id"] for b in results] == [c[0] for c in MULTI_TOOL_CALLS]


async def test_chat_uses_the_non_streaming_call(server: AnthropicServer, provider: AnthropicProvider) -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 20},
    }
    server.push(Reply(body=message, headers={"request-id": "req_1"}))
    response = await provider.chat(QUESTION)
    assert "stream" not in server.requests[0].body
    assert response.text == "Checking." and response.finish_reason == "tool_calls"
    assert response.message.tool_calls == [
        ToolCall(id="toolu_1", name="get_weather", arguments='{"location": "Paris"}')
    ]
    assert (response.usage.input_tokens, response.usage.cached_input_tokens, response.usage.output_tokens) == (
        100,
        90,
        20,
    )
    # claude-haiku-4-5: 10 uncached at $1.00/M, 90 cache reads at $0.10/M, 20 out at $5.00/M
    assert response.cost.total == pytest.approx((10 * 1.00 + 90 * 0.10 + 20 * 5.00) / 1e6)


async def test_error_event_mid_stream_keeps_partial_text(server: AnthropicServer, provider: AnthropicProvider) -> None:
    overloaded = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    server.push(Reply(events=[*TEXT_STREAM[:5], overloaded]))
    seen: list[Element] = []
    with pytest.raises(ProviderServerError) as info:
        await provider.stream(QUESTION).pipe(ops.do_action(seen.append), ops.to_list())
    assert info.value.partial == "The capital of France is" and "overloaded_error" in str(info.value)
    assert [e.text for e in seen] == ["The capital", " of France is"]  # type: ignore[attr-defined]
    assert len(server.requests) == 1  # text was already out: never retried


async def test_overloaded_event_before_any_content_is_retried(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    overloaded = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    server.push(Reply(events=[TEXT_STREAM[0], overloaded]), Reply(events=TEXT_STREAM))
    out = await collect(provider)
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert len(server.requests) == 2 and len(provider.delays) == 1  # type: ignore[attr-defined]


async def test_refusal_is_a_content_blocked_error(server: AnthropicServer, provider: AnthropicProvider) -> None:
    refusal = sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {}})
    server.push(Reply(events=[TEXT_STREAM[0], refusal, TEXT_STREAM[-1]]))
    with pytest.raises(ContentBlockedError):
        await collect(provider)


async def test_401_is_not_retried_and_the_key_stays_secret(server: AnthropicServer, bus: EventBus) -> None:
    wrong = "sk-ant-api03-wrong-key-0123456789abcdef"
    provider = AnthropicProvider("claude-haiku-4-5", api_key=wrong, base_url=server.url, bus=bus, max_retries=3)
    try:
        with pytest.raises(AuthenticationError) as info:
            await collect(provider)
    finally:
        await provider.aclose()
    assert info.value.status == 401 and "invalid x-api-key" in str(info.value)
    assert len(server.requests) == 1
    assert wrong not in str(info.value) and all(wrong not in repr(e) for e in bus.events())
    assert isinstance(bus.events()[-1], ProviderCallFailed)


async def test_429_with_retry_after_then_success(server: AnthropicServer, provider: AnthropicProvider) -> None:
    limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens exceeded"}}
    server.push(Reply(status=429, body=limited, headers={"retry-after": "7"}), Reply(events=TEXT_STREAM))
    out = await collect(provider)
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert provider.delays == [7.0]  # type: ignore[attr-defined]
    assert len(server.requests) == 2


async def test_529_overloaded_then_success(server: AnthropicServer, provider: AnthropicProvider) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.push(Reply(status=529, body=overloaded), Reply(events=TEXT_STREAM))
    out = await collect(provider)
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert len(provider.delays) == 1 and len(server.requests) == 2  # type: ignore[attr-defined]


async def test_400_from_the_api_is_not_retried(server: AnthropicServer, provider: AnthropicProvider) -> None:
    with pytest.raises(ProviderHTTPError) as info:  # the real server-side check: no messages at all
        await collect(provider, ChatRequest(messages=[Message.system("only a system prompt")]))
    assert info.value.status == 400 and "at least one message" in str(info.value)
    assert len(server.requests) == 1


async def test_disconnect_mid_stream(server: AnthropicServer, provider: AnthropicProvider) -> None:
    server.push(Reply(events=TEXT_STREAM, cut_after=5))
    with pytest.raises(StreamInterruptedError) as info:
        await collect(provider)
    assert info.value.partial == "The capital of France is"


async def test_malformed_json_names_provider_and_line(server: AnthropicServer, provider: AnthropicProvider) -> None:
    bad = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_de\n\n'
    server.push(Reply(events=[*TEXT_STREAM[:4], bad]))
    with pytest.raises(MalformedEventError) as info:
        await collect(provider)
    assert "anthropic" in str(info.value) and '"type":"text_de' in str(info.value)
    assert info.value.line.endswith('"type":"text_de') and info.value.partial == "The capital"


async def test_slow_first_byte_past_the_ttft_timeout(server: AnthropicServer, bus: EventBus) -> None:
    server.push(Reply(events=TEXT_STREAM, first_byte_delay=0.3))
    provider = AnthropicProvider("m", api_key=server.api_key, base_url=server.url, bus=bus, ttft_timeout=0.05)
    try:
        with pytest.raises(ProviderTimeoutError, match="first token"):
            await collect(provider)
    finally:
        await provider.aclose()


async def test_one_request_for_all_subscribers_and_late_ones_catch_up(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    server.push(Reply(events=TEXT_STREAM, delay=0.02))
    stream = provider.stream(QUESTION)
    first: list[Element] = []
    done = asyncio.get_running_loop().create_future()
    stream.subscribe(first.append, done.set_exception, lambda: done.set_result(None))
    while not any(isinstance(e, TextDelta) for e in first):
        await asyncio.sleep(0.005)
    late = await stream.pipe(ops.to_list())
    await done
    assert len(server.requests) == 1
    assert "".join(e.text for e in late if isinstance(e, TextDelta)) == TEXT_STREAM_TEXT
    assert late[-1] == first[-1]  # the same EndOfTurn


async def test_disposing_the_last_subscriber_aborts_the_request(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    server.push(Reply(events=TEXT_STREAM[:4], hang=True))
    async with ano_leaks():
        seen: list[Element] = []
        subscription = provider.stream(QUESTION).subscribe(seen.append)
        while not seen:
            await asyncio.sleep(0.005)
        subscription.dispose()
        await server.client_left()  # the server saw the connection close
        await provider.aclose()
    assert seen == [TextDelta("The capital")] and server.disconnects == 1 and server.completed == 0


async def test_built_from_the_registry_with_the_key_from_the_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", server.api_key)
    provider = create_provider({"type": "anthropic", "model": "claude-haiku-4-5", "base_url": server.url})
    server.push(Reply(events=TEXT_STREAM))
    try:
        assert isinstance(provider, AnthropicProvider) and provider.capabilities.tools
        out = await collect(provider)
    finally:
        await provider.aclose()
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]


async def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    provider = AnthropicProvider("claude-haiku-4-5", base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        await collect(provider)
    await provider.aclose()


async def test_debug_output_never_shows_the_key(server: AnthropicServer, bus: EventBus) -> None:
    lines: list[str] = []
    provider = AnthropicProvider("m", api_key=server.api_key, base_url=server.url, bus=bus, debug=lines.append)
    server.push(Reply(events=TEXT_STREAM))
    try:
        await collect(provider)
    finally:
        await provider.aclose()
    assert any("x-api-key" in line for line in lines) and any("message_stop" in line for line in lines)
    assert all(server.api_key not in line for line in lines)


async def test_json_schema_output_is_sent_as_output_config_format(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    # Structured outputs: a json_schema response format was dropped before; the API takes it as output_config.format.
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    server.push(Reply(events=TEXT_STREAM))
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    await provider.stream(ChatRequest(messages=[Message.user("x")], response_format=fmt)).pipe(ops.to_list())
    body = server.requests[0].body  # accepted by the loopback server, which refuses unknown top-level fields
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    short = build_request(
        [Message.user("x")], {"model": "m", "response_format": {"type": "json_schema", "schema": schema}}
    )
    assert short["output_config"]["format"]["schema"] == schema
    with pytest.raises(ConfigError, match="json_schema needs a 'schema' object"):
        build_request([Message.user("x")], {"model": "m", "response_format": {"type": "json_schema"}})


async def test_pings_do_not_hold_off_the_idle_timeout(server: AnthropicServer, bus: EventBus) -> None:
    """``event: ping`` only keeps the connection open: after the first token a stream of pings is idle."""
    head = [e for e in TEXT_STREAM if "message_start" in e or "content_block_start" in e or "The capital" in e]
    ping = sse("ping", {"type": "ping"})
    server.push(Reply(events=[*head, *[ping] * 60], delay=0.05))  # 3 s of pings, 50 ms apart
    provider = AnthropicProvider("m", api_key=server.api_key, base_url=server.url, bus=bus, idle_timeout=0.4)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        with pytest.raises(ProviderTimeoutError, match=r"no data for 0\.4 s") as info:
            await collect(provider)
        assert loop.time() - start < 2.0  # long before the pings end
    finally:
        await provider.aclose()
    assert info.value.partial == "The capital"
