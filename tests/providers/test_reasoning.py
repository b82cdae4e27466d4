"""Reasoning as stream elements, and tool loops with reasoning on, against loopback servers that enforce
each API's rules: Anthropic extended thinking (signed thinking blocks must come back ahead of the tool calls
they led to), Gemini thought parts and thought signatures (Gemini 3 refuses a call without its signature),
and OpenAI-compatible ``reasoning_content``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, ReasoningDelta, TextDelta, ToolCallElement
from rxkit.errors import ConfigError, ProviderHTTPError
from rxkit.graph import Graph
from rxkit.operators import tool_loop
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.anthropic import build_request as anthropic_body
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.gemini import build_request as gemini_body
from rxkit.providers.openai import OpenAIProvider, convert_messages
from rxkit.providers.replay import ReplayProvider, record
from rxkit.state.sqlite import SQLiteStore
from rxkit.telemetry.events import EventBus
from rxkit.tools import tool
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message, ReasoningPart, TextPart, ToolCall, ToolCallPart
from tests.providers.anthropic_server import AnthropicServer, Reply, sign, thinking_stream
from tests.providers.gemini_server import GeminiServer, chunk
from tests.providers.openai_server import OpenAIServer, sse_body
from tests.providers.openai_server import Reply as OpenAIReply

THOUGHT = "The user wants the weather in Paris. I should call get_weather with location Paris."
CALL = ("toolu_01Weather000000000000000", "get_weather", '{"location": "Paris"}')


@tool
def get_weather(location: str) -> str:
    """The weather for a place."""
    return f"sunny in {location}"


def _turn(text: str, **request: Any) -> Turn:
    turn = Turn(Message.user(text))
    turn.request = ChatRequest(messages=[turn.user], **request)
    return turn


# ---------------------------------------------------------------- Anthropic


@pytest.fixture
async def anthropic() -> AsyncIterator[tuple[AnthropicServer, AnthropicProvider]]:
    async with AnthropicServer() as server:
        provider = AnthropicProvider(
            "claude-sonnet-4-5", api_key=server.api_key, base_url=server.url, bus=EventBus(), max_retries=0
        )
        yield server, provider
        await provider.aclose()


async def test_anthropic_thinking_streams_as_reasoning_not_text(anthropic: Any) -> None:
    server, provider = anthropic
    server.push(Reply(events=thinking_stream(THOUGHT, "It is sunny.", redacted="EmwKAhgBEgy3va3pzix/LafPsn4a")))
    request = ChatRequest(messages=[Message.user("Weather in Paris?")], extra={"reasoning": "low"})
    out = await provider.stream(request).pipe(ops.to_list())
    reasoning = [e.text for e in out if isinstance(e, ReasoningDelta)]
    assert len(reasoning) > 1 and "".join(reasoning) == THOUGHT  # live, in pieces
    assert "".join(e.text for e in out if type(e) is TextDelta) == "It is sunny."  # the answer alone
    assert out.index(next(e for e in out if isinstance(e, ReasoningDelta))) < out.index(
        next(e for e in out if type(e) is TextDelta)
    )
    response = out[-1].response
    assert response.text == "It is sunny." and response.message.reasoning == THOUGHT
    thinking, redacted = response.message.content[:2]
    assert thinking == ReasoningPart(text=THOUGHT, signature=sign(THOUGHT), source="anthropic")
    assert redacted == ReasoningPart(data="EmwKAhgBEgy3va3pzix/LafPsn4a", source="anthropic")
    body = server.requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] > 2048  # room for the answer after the budget


async def test_anthropic_tool_loop_with_thinking_sends_the_signed_blocks_back(anthropic: Any, tmp_path: Path) -> None:
    server, provider = anthropic
    server.push(
        Reply(events=thinking_stream(THOUGHT, "Let me check.", [CALL], redacted="EmwKAhgBEgy3va3p")),
        Reply(events=thinking_stream("It is sunny, say so.", "Sunny in Paris.")),
    )
    turn = _turn("Weather in Paris?", extra={"reasoning": 4096})
    out = await Graph.chain(tool_loop(provider, [get_weather])).arun([turn])
    assert [e.call.name for e in out if isinstance(e, ToolCallElement)] == ["get_weather"]
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.text == "Sunny in Paris."
    assert len(server.requests) == 2  # the loopback server took the second request: it kept the rule
    second = server.requests[1].body
    assistant = second["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][:2] == [
        {"type": "thinking", "thinking": THOUGHT, "signature": sign(THOUGHT)},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"},
    ]
    assert [b["type"] for b in assistant["content"][2:]] == ["text", "tool_use"]
    assert second["messages"][2]["content"][0]["type"] == "tool_result"

    # The saved history keeps the signed reasoning: a store round-trips it, and a resumed loop is still valid.
    store = SQLiteStore(tmp_path / "state.db")
    try:
        await store.append_turn("s", out[-1].turn.messages_to_save())
        history = await store.load("s")
    finally:
        await store.aclose()
    assert history[1].content[0] == ReasoningPart(text=THOUGHT, signature=sign(THOUGHT), source="anthropic")
    assert anthropic_body(history[:3], {"model": "m"})["messages"][1]["content"] == assistant["content"]


async def test_anthropic_loopback_refuses_a_tool_loop_that_drops_the_thinking(anthropic: Any) -> None:
    _, provider = anthropic
    call = ToolCallPart.model_validate({"call": {"id": CALL[0], "name": CALL[1], "arguments": CALL[2]}})
    stripped = [
        Message.user("Weather in Paris?"),
        Message(role="assistant", content=[TextPart(text="Let me check."), call]),
        Message.tool(CALL[0], "sunny", name="get_weather"),
    ]
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.chat(ChatRequest(messages=stripped, extra={"reasoning": 4096}))
    assert caught.value.status == 400
    assert "a final `assistant` message must start with a thinking block" in str(caught.value)

    tampered = Message(
        role="assistant", content=[ReasoningPart(text="edited", signature=sign(THOUGHT), source="anthropic"), call]
    )
    with pytest.raises(ProviderHTTPError, match="Invalid `signature` in `thinking` block"):
        await provider.chat(ChatRequest(messages=[stripped[0], tampered, stripped[2]], extra={"reasoning": 4096}))


def test_anthropic_reasoning_parameter_and_foreign_reasoning() -> None:
    assert (
        anthropic_body([Message.user("x")], {"model": "m", "reasoning": "high"})["thinking"]["budget_tokens"] == 24576
    )
    with pytest.raises(ConfigError, match="must be greater than the thinking budget"):
        anthropic_body([Message.user("x")], {"model": "m", "reasoning": 8000, "max_tokens": 4000})
    with pytest.raises(ConfigError, match="at least 1024"):
        anthropic_body([Message.user("x")], {"model": "m", "reasoning": 10})
    # Reasoning from another API (or unsigned) cannot be verified by Anthropic: it is left out.
    message = Message(
        role="assistant",
        content=[
            ReasoningPart(text="t", signature="sig", source="gemini"),
            ReasoningPart(text="u", source="anthropic"),
            TextPart(text="A"),
        ],
    )
    body = anthropic_body([Message.user("q"), message, Message.user("r")], {"model": "m"})
    assert body["messages"][1]["content"] == [{"type": "text", "text": "A"}]


# ---------------------------------------------------------------- Gemini

GEMINI_SIGNATURE = "CpwCAdHtim9+n0lSEaTZyGRVStoCQuBe1s0lZ4Sb7A=="


def _thought_stream(model: str) -> list[str]:
    return [
        chunk(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [{"text": "**Planning** I need the weather", "thought": True}],
                            "role": "model",
                        }
                    }
                ],
                "modelVersion": model,
                "responseId": "resp-1",
            }
        ),
        chunk(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {"text": " for Paris.", "thought": True},
                                {
                                    "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                                    "thoughtSignature": GEMINI_SIGNATURE,
                                },
                            ],
                            "role": "model",
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 40,
                    "candidatesTokenCount": 12,
                    "thoughtsTokenCount": 85,
                    "totalTokenCount": 137,
                },
                "modelVersion": model,
            }
        ),
    ]


def _answer_stream(model: str) -> list[str]:
    return [
        chunk(
            {
                "candidates": [
                    {"content": {"parts": [{"text": "Sunny in Paris."}], "role": "model"}, "finishReason": "STOP"}
                ],
                "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 5, "totalTokenCount": 65},
                "modelVersion": model,
            }
        )
    ]


@pytest.fixture
async def gemini() -> AsyncIterator[tuple[GeminiServer, GeminiProvider]]:
    async with GeminiServer() as server:
        provider = GeminiProvider(
            "gemini-3-pro-preview", api_key=server.api_key, base_url=server.url, bus=EventBus(), max_retries=0
        )
        yield server, provider
        await provider.aclose()


async def test_gemini_thoughts_stream_as_reasoning_and_tool_loop_keeps_signatures(gemini: Any) -> None:
    server, provider = gemini
    model = "gemini-3-pro-preview"
    server.push(Reply(events=_thought_stream(model)), Reply(events=_answer_stream(model)))
    turn = _turn("Weather in Paris?", extra={"reasoning": "high"})
    out = await Graph.chain(tool_loop(provider, [get_weather])).arun([turn])
    assert "".join(e.text for e in out if isinstance(e, ReasoningDelta)) == "**Planning** I need the weather for Paris."
    assert "".join(e.text for e in out if type(e) is TextDelta) == "Sunny in Paris."
    first = server.requests[0].body
    assert first["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingLevel": "high"}
    second = server.requests[1].body  # accepted by the loopback server, which checks Gemini 3's rule
    model_turn = second["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                "thoughtSignature": GEMINI_SIGNATURE,
            }
        ],
    }
    saved = out[-1].turn.messages_to_save()[1]
    assert saved.reasoning == "**Planning** I need the weather for Paris."
    assert Message.model_validate_json(saved.model_dump_json()) == saved  # what the stores do


async def test_gemini_3_loopback_refuses_a_call_without_its_signature(gemini: Any) -> None:
    _, provider = gemini
    call = ToolCallPart.model_validate({"call": {"id": "call_rx1", "name": "get_weather", "arguments": "{}"}})
    messages = [
        Message.user("Weather?"),
        Message(role="assistant", content=[call]),
        Message.tool("call_rx1", "sunny", name="get_weather"),
    ]
    with pytest.raises(ProviderHTTPError, match="missing a thought_signature") as caught:
        await provider.chat(ChatRequest(messages=messages))
    assert caught.value.status == 400


async def test_gemini_usage_counts_thought_tokens(gemini: Any) -> None:
    server, provider = gemini
    server.push(Reply(events=_thought_stream("gemini-3-pro-preview")))
    out = await provider.stream(ChatRequest(messages=[Message.user("Weather?")])).pipe(ops.to_list())
    response = out[-1].response
    assert response.usage.reasoning_tokens == 85
    assert response.usage.output_tokens == 12 + 85  # thoughts are billed as output


def test_gemini_reasoning_budget() -> None:
    config = gemini_body([Message.user("x")], {"reasoning": 1024})["generationConfig"]
    assert config == {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024}}
    older = gemini_body([Message.user("x")], {"model": "gemini-2.5-flash", "reasoning": "medium"})["generationConfig"]
    assert older == {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192}}  # 2.x takes no level


# ---------------------------------------------------------------- OpenAI-compatible reasoning_content


def _delta(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "chatcmpl-r1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        data["usage"] = usage
    return data


async def test_openai_compatible_reasoning_content_is_reasoning() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 40,
        "total_tokens": 50,
        "completion_tokens_details": {"reasoning_tokens": 31},
    }
    events = [
        _delta({"role": "assistant", "content": None, "reasoning_content": "Two plus two"}),
        _delta({"reasoning_content": " is four."}),
        _delta({"content": "4"}),
        _delta({}, "stop", usage),
    ]
    async with OpenAIServer() as server:
        server.push(OpenAIReply(stream=sse_body(events)))
        provider = OpenAIProvider("deepseek-reasoner", base_url=server.url, api_key=server.api_key, bus=EventBus())
        try:
            out = await provider.stream(ChatRequest(messages=[Message.user("2+2?")], extra={"reasoning": "high"})).pipe(
                ops.to_list()
            )
        finally:
            await provider.aclose()
    assert [type(e).__name__ for e in out] == ["ReasoningDelta", "ReasoningDelta", "TextDelta", "EndOfTurn"]
    response = out[-1].response
    assert response.text == "4" and response.message.reasoning == "Two plus two is four."
    assert response.usage.reasoning_tokens == 31 and response.usage.output_tokens == 40
    assert server.requests[0].body["reasoning_effort"] == "high"


async def test_a_reasoning_stream_records_and_replays(anthropic: Any, tmp_path: Path) -> None:
    server, provider = anthropic
    server.push(Reply(events=thinking_stream(THOUGHT, "It is sunny.")))
    path = tmp_path / "answer.jsonl"
    live = await record(provider.stream(ChatRequest(messages=[Message.user("Weather?")])), path).pipe(ops.to_list())
    replayed = await ReplayProvider(path).stream(ChatRequest(messages=[Message.user("Weather?")])).pipe(ops.to_list())
    assert [e for e in replayed if isinstance(e, ReasoningDelta)] == [e for e in live if isinstance(e, ReasoningDelta)]
    assert replayed[-1].response.message.content[0].signature == sign(THOUGHT)


def test_openai_compatible_tool_loop_hands_reasoning_content_back() -> None:
    thought = ReasoningPart(text="I need the weather.", source="openai")
    call = ToolCall(id="call_1", name="get_weather", arguments='{"location": "Paris"}')
    assistant = Message(role="assistant", content=[thought, *Message.assistant("", [call]).content])
    history = [Message.user("Weather?"), assistant, Message.tool("call_1", "sunny", name="get_weather")]
    compatible = convert_messages(history, empty_content="", reasoning=True)
    assert compatible[1]["reasoning_content"] == "I need the weather."  # DeepSeek's thinking mode needs it back
    assert "reasoning_content" not in convert_messages(history)[1]  # OpenAI itself takes no such field
    answered = Message(role="assistant", content=[thought, TextPart(text="Sunny.")])
    assert "reasoning_content" not in convert_messages([answered], reasoning=True)[0]  # only within a tool loop


async def test_gemini_signed_plain_answer_gets_its_signature_back(gemini: Any) -> None:
    server, provider = gemini
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Paris.", "thoughtSignature": GEMINI_SIGNATURE}], "role": "model"},
                "finishReason": "STOP",
            }
        ],
        "modelVersion": "gemini-3-pro-preview",
    }
    server.push(Reply(events=[chunk(answer)]), Reply(events=_answer_stream("gemini-3-pro-preview")))
    first = await provider.stream(ChatRequest(messages=[Message.user("Capital of France?")])).pipe(ops.to_list())
    reply = first[-1].response.message
    assert reply.text == "Paris." and reply.content[0] == ReasoningPart(signature=GEMINI_SIGNATURE, source="gemini")
    history = [Message.user("Capital of France?"), reply, Message.user("And Italy?")]
    await provider.stream(ChatRequest(messages=history)).pipe(ops.to_list())
    assert server.requests[1].body["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Paris.", "thoughtSignature": GEMINI_SIGNATURE}],
    }


async def test_broken_tool_arguments_keep_the_signed_thinking(anthropic: Any) -> None:
    # tool_loop rewrites arguments that are not a JSON object (cut off by max_tokens, say); it used to
    # rebuild the message from text and calls, dropping the thinking block, and the API refused the next call.
    server, provider = anthropic
    broken = (CALL[0], CALL[1], '{"location": "Par')
    server.push(
        Reply(events=thinking_stream(THOUGHT, "", [broken])),
        Reply(events=thinking_stream("The call failed; answer anyway.", "I could not check.")),
    )
    out = await Graph.chain(tool_loop(provider, [get_weather])).arun([_turn("Weather?", extra={"reasoning": 4096})])
    assert out[-1].response.text == "I could not check."
    assistant = server.requests[1].body["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": THOUGHT, "signature": sign(THOUGHT)}
    assert assistant[1]["input"] == {"_unparsed_arguments": '{"location": "Par'}
