"""The Gemini provider: request building, stream parsing, and the provider end
to end against a loopback server speaking the documented wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from reactivex import Observer
from reactivex import operators as ops

from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ContentBlockedError,
    MalformedEventError,
    ProviderHTTPError,
    ProviderServerError,
    RateLimitError,
    StreamInterruptedError,
)
from rxkit.providers import create_provider
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers.gemini import GeminiProvider, apply_response, build_request, error_from_body, stream_path
from rxkit.sse import SSEDecoder
from rxkit.telemetry.events import (
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    ProviderFirstToken,
)
from rxkit.testing import ano_leaks
from rxkit.types import AudioPart, ChatRequest, ImagePart, Message, TextPart, ToolCall, ToolDescriptor
from tests.providers.gemini_server import (
    BLOCKED_ANSWER_STREAM,
    BLOCKED_PROMPT_STREAM,
    MULTI_CALL_STREAM,
    MULTI_CALLS,
    SIGNATURE,
    TEXT_STREAM,
    TEXT_STREAM_TEXT,
    GeminiServer,
    Reply,
    check_generate_body,
    chunk,
    google_error,
)

WEATHER = ToolDescriptor(
    name="get_weather",
    description="Weather for a place",
    input_schema={
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
)


def parse(blocks: list[str], size: int | None = None) -> tuple[StreamAccumulator, list[Element]]:
    """Run recorded SSE through the real SSE decoder and :func:`apply_response`."""
    data = "".join(blocks).encode()
    pieces = [data] if size is None else [data[i : i + size] for i in range(0, len(data), size)]
    decoder, acc, out = SSEDecoder(), StreamAccumulator("gemini"), []
    acc.observers = [Observer(out.append)]
    for piece in pieces:
        for event in decoder.feed(piece):
            apply_response(acc, json.loads(event.data))
    return acc, out


# ---------------------------------------------------------------- request body


def test_contents_roles_and_system_instruction() -> None:
    messages = [
        Message.system("You are terse."),
        Message.user("Hi"),
        Message.user("Still there?"),
        Message.assistant("Yes."),
        Message.user("Good"),
    ]
    body = build_request(messages, {"model": "gemini-2.5-flash", "temperature": 0.1, "max_tokens": 64})
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "Still there?"}]},
        {"role": "model", "parts": [{"text": "Yes."}]},
        {"role": "user", "parts": [{"text": "Good"}]},
    ]
    assert body["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 64}
    assert "model" not in body
    assert check_generate_body(body) is None


def test_function_calls_and_responses() -> None:
    calls = [
        ToolCall(id="call_rxabc", name="get_weather", arguments='{"location": "Paris"}'),
        ToolCall(id="fc-7|ts:" + SIGNATURE, name="get_time", arguments="{}"),
    ]
    messages = [
        Message.user("Weather and time?"),
        Message.assistant("", calls),
        Message.tool("call_rxabc", '{"temp_c": 18}'),  # no name: found from the call
        Message.tool("fc-7|ts:" + SIGNATURE, "clock broke", name="get_time", is_error=True),
    ]
    body = build_request(messages, {"tool_choice": "auto"}, [WEATHER])
    model_turn, results = body["contents"][1], body["contents"][2]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},  # made-up id stays home
            {"functionCall": {"name": "get_time", "args": {}, "id": "fc-7"}, "thoughtSignature": SIGNATURE},
        ],
    }
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 18}}}},
            {"functionResponse": {"name": "get_time", "response": {"error": "clock broke"}, "id": "fc-7"}},
        ],
    }
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": WEATHER.input_schema,
                    "description": "Weather for a place",
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert check_generate_body(body) is None


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ("get_weather", {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice(choice: str, config: dict[str, object]) -> None:
    body = build_request([Message.user("x")], {"tool_choice": choice}, [WEATHER])
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_generation_config_and_top_level_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    params = {
        "model": "gemini-2.5-pro",
        "top_p": 0.5,
        "stop": ["END"],
        "seed": 3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "thinkingConfig": {"thinkingBudget": 0},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc",
    }
    body = build_request([Message.user("x")], params)
    assert body["generationConfig"] == {
        "topP": 0.5,
        "stopSequences": ["END"],
        "seed": 3,
        "thinkingConfig": {"thinkingBudget": 0},
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE" and body["cachedContent"] == "cachedContents/abc"
    assert check_generate_body(body) is None
    json_mode = build_request([Message.user("x")], {"response_format": {"type": "json_object"}})
    assert json_mode["generationConfig"] == {"responseMimeType": "application/json"}


def test_media_parts() -> None:
    message = Message(
        role="user",
        content=[
            TextPart(text="Describe"),
            ImagePart(data="iVBORw0KGgo=", mime_type="image/png"),
            ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
            AudioPart(data="UklGRg==", format="wav"),
        ],
    )
    parts = build_request([message], {})["contents"][0]["parts"]
    assert parts[1:] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


def test_tool_result_for_an_unknown_call_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names no function"):
        build_request([Message.user("x"), Message.tool("nope", "1")], {})


def test_stream_path() -> None:
    assert stream_path("models/gemini-2.5-flash") == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


# ---------------------------------------------------------------- stream parsing


@pytest.mark.parametrize("size", [None, 1, 7, 1460])
def test_text_stream_in_any_chunking(size: int | None) -> None:
    acc, out = parse(TEXT_STREAM, size)
    assert all(isinstance(e, TextDelta) for e in out) and len(out) == 2
    assert "".join(e.text for e in out) == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert acc.finish_reason == "stop" and acc.model == "gemini-2.5-flash"


def test_usage_counts_cached_and_thinking_tokens() -> None:
    acc, _ = parse(TEXT_STREAM)
    assert acc.input_tokens == 1209  # promptTokenCount already includes the cached part
    assert acc.cached_input_tokens == 1024
    assert acc.output_tokens == 12 + 30  # thinking tokens are billed as output


def test_several_function_calls_across_chunks() -> None:
    acc, out = parse(MULTI_CALL_STREAM, 11)
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == MULTI_CALLS
    assert calls[0].id.endswith("|ts:" + SIGNATURE)
    assert len({c.id for c in calls}) == 3 and all(c.id.startswith("call_rx") for c in calls)
    assert acc.finish_reason == "tool_calls" and acc.partial == "Checking both."
    # the ids round-trip: a follow-up request carries the signature back
    follow_up = [Message.user("q"), Message.assistant(acc.partial, calls), *(Message.tool(c.id, "ok") for c in calls)]
    body = build_request(follow_up, {})
    assert body["contents"][1]["parts"][1]["thoughtSignature"] == SIGNATURE
    assert [p["functionResponse"]["name"] for p in body["contents"][2]["parts"]] == [n for n, _ in MULTI_CALLS]
    assert check_generate_body(body) is None


def test_server_ids_are_kept() -> None:
    acc = StreamAccumulator("gemini")
    part = {"functionCall": {"id": "fc-1", "name": "now", "args": {}}}
    apply_response(acc, {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]})
    assert acc.tool_calls == [ToolCall(id="fc-1", name="now", arguments="{}")]


def test_thought_parts_are_not_answer_text() -> None:
    acc = StreamAccumulator("gemini")
    parts = [{"text": "plan...", "thought": True}, {"text": "Hi"}]
    apply_response(acc, {"candidates": [{"content": {"parts": parts}}]})
    assert acc.partial == "Hi"


def test_blocked_prompt() -> None:
    with pytest.raises(ContentBlockedError, match="prompt was blocked") as info:
        parse(BLOCKED_PROMPT_STREAM)
    assert info.value.reason == "SAFETY" and info.value.provider == "gemini"


def test_blocked_answer_keeps_partial_text() -> None:
    with pytest.raises(ContentBlockedError, match="SAFETY") as info:
        parse(BLOCKED_ANSWER_STREAM)
    assert info.value.partial == "The capital of France"


def test_error_object_mid_stream() -> None:
    acc = StreamAccumulator("gemini")
    apply_response(acc, {"candidates": [{"content": {"parts": [{"text": "Par"}]}}]})
    with pytest.raises(ProviderServerError) as info:
        apply_response(acc, google_error(503, "UNAVAILABLE", "The model is overloaded."))
    assert info.value.status == 503 and info.value.partial == "Par" and "overloaded" in str(info.value)


def test_missing_fields_raise_for_the_caller_to_report() -> None:
    with pytest.raises(KeyError):
        apply_response(StreamAccumulator("gemini"), {"candidates": [{"content": {"parts": [{"functionCall": {}}]}}]})


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            google_error(400, "INVALID_ARGUMENT", "API key not valid.", [{"reason": "API_KEY_INVALID"}]),
            AuthenticationError,
        ),
        (403, google_error(403, "PERMISSION_DENIED", "unregistered callers"), AuthenticationError),
        (400, google_error(400, "INVALID_ARGUMENT", "bad role"), ProviderHTTPError),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "quota", [{"retryDelay": "37s"}]), RateLimitError),
        (503, google_error(503, "UNAVAILABLE", "overloaded"), ProviderServerError),
    ],
)
def test_http_error_bodies(status: int, body: dict[str, object], cls: type) -> None:
    err = error_from_body("gemini", body, status)
    assert type(err) is cls and err.status == status
    if status == 429:
        assert err.retry_after == 37.0


def test_an_error_body_that_echoes_the_key_is_kept_redacted() -> None:
    key = "gemini-key-of-no-known-shape-77"
    provider = GeminiProvider(api_key=key)  # registers the key as a secret
    body = json.dumps(
        google_error(400, "INVALID_ARGUMENT", f"API key not valid: {key}", [{"reason": "API_KEY_INVALID"}])
    )
    error = provider.http_error(400, body, None)
    assert isinstance(error, AuthenticationError)
    assert key not in str(error) and key not in error.body  # type: ignore[attr-defined]
    assert "API key not valid: ***" in error.body  # type: ignore[attr-defined]


# ---------------------------------------------------------------- end to end, over loopback HTTP

QUESTION = ChatRequest(messages=[Message.system("Answer briefly."), Message.user("What is the capital of France?")])


@pytest.fixture
async def server() -> AsyncIterator[GeminiServer]:
    async with GeminiServer() as s:
        yield s


@pytest.fixture
async def provider(server: GeminiServer, bus: EventBus) -> AsyncIterator[GeminiProvider]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:  # record backoff instead of waiting it out
        delays.append(seconds)

    p = GeminiProvider(
        "gemini-2.5-flash",
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


async def collect(provider: GeminiProvider, request: ChatRequest = QUESTION) -> list[Element]:
    return await provider.stream(request).pipe(ops.to_list())


async def test_streams_text_with_usage_cost_timing_and_events(
    server: GeminiServer, provider: GeminiProvider, bus: EventBus
) -> None:
    server.push(Reply(events=TEXT_STREAM, delay=0.001))
    async with ano_leaks():
        out = await collect(provider)
        await provider.aclose()
    *deltas, end = out
    assert [e.text for e in deltas] == ["The capital of France", " is Paris — « Paris » 🇫🇷."]  # type: ignore[attr-defined]
    assert isinstance(end, EndOfTurn) and end.response is not None
    response = end.response
    assert response.text == TEXT_STREAM_TEXT and response.finish_reason == "stop" and response.provider == "gemini"
    usage = response.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (1209, 1024, 42)
    assert response.cost.total == pytest.approx(((1209 - 1024) * 0.30 + 1024 * 0.03 + 42 * 2.50) / 1e6)
    assert response.ttft_s is not None
    [sent] = server.requests
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and sent.query == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == server.api_key
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Answer briefly."}]}
    kinds = [type(e) for e in bus.events()]
    assert kinds == [ProviderCallStarted, ProviderFirstToken, ProviderCallCompleted]
    assert all(server.api_key not in repr(e) for e in bus.events())


async def test_several_function_calls_split_across_bytes(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=MULTI_CALL_STREAM, chunk_size=5))
    tools = [ToolDescriptor(name=name) for name, _ in MULTI_CALLS]
    out = await collect(provider, ChatRequest(messages=[Message.user("go")], tools=tools, tool_choice="get_weather"))
    calls = [e.call for e in out if isinstance(e, ToolCallElement)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == MULTI_CALLS
    response = out[-1].response  # type: ignore[attr-defined]
    assert response.finish_reason == "tool_calls" and response.message.tool_calls == calls
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 41)
    tool_config = server.requests[0].body["toolConfig"]
    assert tool_config == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


async def test_function_round_trip_is_accepted_by_the_server(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=MULTI_CALL_STREAM), Reply(events=TEXT_STREAM))
    tools = [ToolDescriptor(name=name) for name, _ in MULTI_CALLS]
    first = (await collect(provider, ChatRequest(messages=[Message.user("go")], tools=tools)))[-1].response  # type: ignore[attr-defined]
    results = [Message.tool(c.id, json.dumps({"ok": i})) for i, c in enumerate(first.message.tool_calls)]
    out = await collect(provider, ChatRequest(messages=[Message.user("go"), first.message, *results], tools=tools))
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    sent = server.requests[1].body["contents"]
    assert sent[1]["parts"][1]["thoughtSignature"] == SIGNATURE
    assert [p["functionResponse"]["response"] for p in sent[2]["parts"]] == [{"output": {"ok": i}} for i in range(3)]


async def test_chat_uses_generate_content(server: GeminiServer, provider: GeminiProvider) -> None:
    body = {
        "candidates": [{"content": {"parts": [{"text": "Paris."}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
        "modelVersion": "gemini-2.5-flash",
    }
    server.push(Reply(body=body))
    response = await provider.chat(QUESTION)
    assert server.requests[0].path.endswith(":generateContent") and server.requests[0].query == {}
    assert response.text == "Paris." and response.usage.output_tokens == 2
    assert response.cost.total == pytest.approx((8 * 0.30 + 2 * 2.50) / 1e6)  # gemini-2.5-flash


async def test_blocked_prompt_is_a_typed_error(server: GeminiServer, provider: GeminiProvider, bus: EventBus) -> None:
    server.push(Reply(events=BLOCKED_PROMPT_STREAM))
    with pytest.raises(ContentBlockedError) as info:
        await collect(provider)
    assert info.value.reason == "SAFETY" and len(server.requests) == 1
    failed = bus.events(ProviderCallFailed)
    assert failed and failed[0].error_type == "ContentBlockedError"  # type: ignore[attr-defined]


async def test_blocked_answer_mid_stream(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=BLOCKED_ANSWER_STREAM))
    seen: list[Element] = []
    with pytest.raises(ContentBlockedError) as info:
        await provider.stream(QUESTION).pipe(ops.do_action(seen.append), ops.to_list())
    assert seen == [TextDelta("The capital of France")] and info.value.partial == "The capital of France"


async def test_error_object_mid_stream_keeps_partial(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=[TEXT_STREAM[0], chunk(google_error(500, "INTERNAL", "An internal error has occurred."))]))
    with pytest.raises(ProviderServerError) as info:
        await collect(provider)
    assert info.value.partial == "The capital of France" and len(server.requests) == 1


async def test_invalid_key_is_an_authentication_error_not_retried(server: GeminiServer, bus: EventBus) -> None:
    wrong = "AIzaSyWrongKey-000000000000000000000000"
    provider = GeminiProvider("gemini-2.5-flash", api_key=wrong, base_url=server.url, bus=bus, max_retries=3)
    try:
        with pytest.raises(AuthenticationError) as info:
            await collect(provider)
    finally:
        await provider.aclose()
    assert "API key not valid" in str(info.value) and len(server.requests) == 1
    assert wrong not in str(info.value) and all(wrong not in repr(e) for e in bus.events())


async def test_401_is_not_retried(server: GeminiServer, provider: GeminiProvider) -> None:
    unauthenticated = google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    server.push(Reply(status=401, body=unauthenticated), Reply(events=TEXT_STREAM))
    with pytest.raises(AuthenticationError):
        await collect(provider)
    assert len(server.requests) == 1


async def test_429_with_retry_after_then_success(server: GeminiServer, provider: GeminiProvider) -> None:
    exhausted = google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    server.push(Reply(status=429, body=exhausted, headers={"Retry-After": "3"}), Reply(events=TEXT_STREAM))
    out = await collect(provider)
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    assert provider.delays == [3.0] and len(server.requests) == 2  # type: ignore[attr-defined]


async def test_429_honours_the_retry_delay_in_the_body(server: GeminiServer, provider: GeminiProvider) -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
    exhausted = google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [info])
    server.push(Reply(status=429, body=exhausted), Reply(events=TEXT_STREAM))
    await collect(provider)
    assert provider.delays == [12.0]  # type: ignore[attr-defined]


async def test_503_then_success(server: GeminiServer, provider: GeminiProvider) -> None:
    unavailable = google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    server.push(Reply(status=503, body=unavailable), Reply(events=TEXT_STREAM))
    out = await collect(provider)
    assert out[-1].response.text == TEXT_STREAM_TEXT and len(server.requests) == 2  # type: ignore[attr-defined]


async def test_disconnect_mid_stream(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=TEXT_STREAM, cut_after=1))
    with pytest.raises(StreamInterruptedError) as info:
        await collect(provider)
    assert info.value.partial == "The capital of France"


async def test_clean_close_without_finish_reason_is_interrupted(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=TEXT_STREAM[:2]))  # ended normally, but no finishReason ever came
    with pytest.raises(StreamInterruptedError):
        await collect(provider)


async def test_malformed_json_names_provider_and_line(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=[TEXT_STREAM[0], 'data: {"candidates": [{"content": {"parts": [{"text": "Pa\r\n\r\n']))
    with pytest.raises(MalformedEventError) as info:
        await collect(provider)
    assert "gemini" in str(info.value) and '"text": "Pa' in str(info.value)
    assert info.value.partial == "The capital of France"


async def test_disposing_the_last_subscriber_aborts_the_request(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(Reply(events=TEXT_STREAM[:1], hang=True))
    async with ano_leaks():
        first = provider.stream(QUESTION)
        seen: list[Element] = []
        a = first.subscribe(seen.append)
        b = first.subscribe(lambda _: None)
        while not seen:
            await asyncio.sleep(0.005)
        a.dispose()
        await asyncio.sleep(0.05)
        assert server.disconnects == 0  # one subscriber is still there
        b.dispose()
        await server.client_left()
        await provider.aclose()
    assert len(server.requests) == 1 and server.completed == 0


async def test_registry_reads_gemini_or_google_api_key(server: GeminiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", server.api_key)
    provider = create_provider({"type": "gemini", "model": "gemini-2.5-flash", "base_url": server.url})
    server.push(Reply(events=TEXT_STREAM))
    try:
        assert isinstance(provider, GeminiProvider) and provider.capabilities.vision
        out = await collect(provider)
    finally:
        await provider.aclose()
    assert out[-1].response.text == TEXT_STREAM_TEXT  # type: ignore[attr-defined]
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyPreferredKey000000000000000000000")
    assert GeminiProvider("m").api_key == "AIzaSyPreferredKey000000000000000000000"


async def test_debug_output_never_shows_the_key(server: GeminiServer, bus: EventBus) -> None:
    lines: list[str] = []
    provider = GeminiProvider(
        "gemini-2.5-flash", api_key=server.api_key, base_url=server.url, bus=bus, debug=lines.append
    )
    server.push(Reply(events=TEXT_STREAM))
    try:
        await collect(provider)
    finally:
        await provider.aclose()
    assert any("x-goog-api-key" in line for line in lines) and any("finishReason" in line for line in lines)
    assert all(server.api_key not in line for line in lines)
