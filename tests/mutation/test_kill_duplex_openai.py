"""Pins down rxkit.duplex.openai, OpenAI Realtime's event handling and client events (issues 15, 18).

Each server event is handed to ``OpenAIRealtime.handle`` directly (no
socket): what goes out as elements, what the reply's bookkeeping becomes,
and the exact client events built. Shapes as in openai-python's
``types/realtime`` (GA).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest

from rxkit.duplex import OpenAIRealtime
from rxkit.duplex.openai import _item, _tool, _ws_url
from rxkit.duplex.prices import AudioPrices
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    Interrupt,
    ReplyStarted,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    ToolCallDelta,
    ToolCallElement,
    Transcript,
)
from rxkit.errors import MalformedEventError, ProviderError, RateLimitError, redact
from rxkit.telemetry.events import EventBus, RateLimit, RateLimitsUpdated
from rxkit.tools import tool
from rxkit.types import Message, ToolCall


def session(**kw: Any) -> tuple[OpenAIRealtime, list[Any], EventBus]:
    bus = EventBus()
    s = OpenAIRealtime(api_key="sk-test-000000000000", bus=bus, **kw)
    out: list[Any] = []
    s.emit = out.append
    return s, out, bus


def sent(s: OpenAIRealtime) -> list[Any]:
    import orjson

    return [orjson.loads(x) for x in s.outbox.items if isinstance(x, str)]


def test_the_address_the_key_and_the_scheme() -> None:
    s, _, _ = session()
    assert s.connect_url() == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert s.connect_headers() == {"Authorization": "Bearer sk-test-000000000000"}
    assert OpenAIRealtime(api_key=None).connect_headers() == {}
    assert _ws_url("https://example.org/v1") == "wss://example.org/v1"
    assert _ws_url("http://127.0.0.1:8/v1") == "ws://127.0.0.1:8/v1"
    assert _ws_url("ws://x/v1") == "ws://x/v1"
    assert OpenAIRealtime(base_url="https://h/v1/", api_key="sk-x-0000000000").connect_url() == (
        "wss://h/v1/realtime?model=gpt-realtime"
    )
    assert (s.name, s.input_rate, s.output_rate, s.price_source) == ("openai-realtime", 24000, 24000, "openai")


def test_the_setup_event_exactly() -> None:
    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return city

    s, _, _ = session(instructions="Be brief.", voice="marin", tools=[get_time])
    (update,) = s.setup_messages(resumed=False)
    assert update == {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad", "create_response": True, "interrupt_response": True},
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
            },
            "instructions": "Be brief.",
            "tools": [
                {
                    "type": "function",
                    "name": "get_time",
                    "description": "The time in a city.",
                    "parameters": update["session"]["tools"][0]["parameters"],
                }
            ],
            "tool_choice": "auto",
        },
    }
    assert update["session"]["tools"][0]["parameters"]["properties"] == {"city": {"type": "string"}}
    bare, _, _ = session(server_vad=False, transcription_model=None)
    (plain,) = bare.setup_messages(resumed=False)
    assert plain["session"]["audio"] == {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
    }
    assert "instructions" not in plain["session"] and "tools" not in plain["session"]
    assert "tool_choice" not in plain["session"]


def test_a_resumed_session_is_seeded_with_the_text_history() -> None:
    history = [
        Message.system("Be kind."),
        Message.user("hi"),
        Message.assistant("hello"),
        Message.user(""),
        Message.tool("c1", "42", name="f"),
    ]
    s, _, _ = session(history=history)
    events = s.setup_messages(resumed=True)
    assert [e["type"] for e in events] == ["session.update"] + ["conversation.item.create"] * 3
    assert [e["item"] for e in events[1:]] == [
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be kind."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
    ]
    assert len(s.setup_messages(resumed=False)) == 1
    assert _item(Message.assistant("")) is None and _item(Message.system("")) is None
    assert _tool({"type": "function", "function": {"name": "f", "parameters": {}}}) == {
        "type": "function",
        "name": "f",
        "description": "",
        "parameters": {},
    }


def test_the_client_events_exactly() -> None:
    s, _, _ = session()
    assert s.text_messages("hi") == [
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        },
        {"type": "response.create"},
    ]
    png = b"\x89PNG"
    assert s.image_messages(ImageFrame(png, "image/png")) == [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}
                ],
            },
        }
    ]
    assert s.cancel_messages() == [{"type": "response.cancel"}]
    assert s.commit_messages() == [{"type": "input_audio_buffer.commit"}, {"type": "response.create"}]
    assert s.discard_messages() == [{"type": "input_audio_buffer.clear"}]
    assert s.truncate_messages("item_1", 250) == [
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 250}
    ]
    calls = [(ToolCall(id="c1", name="f", arguments="{}"), "one"), (ToolCall(id="c2", name="g", arguments="{}"), "two")]
    assert s.tool_result_messages(calls) == [
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "c1", "output": "one"},
        },
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "c2", "output": "two"},
        },
        {"type": "response.create"},
    ]
    assert s.audio_message(b"hi") == '{"type":"input_audio_buffer.append","audio":"aGk="}'


def test_fatal_errors_are_the_key_the_expiry_and_the_quota() -> None:
    s, _, _ = session()
    for code in ("invalid_api_key", "session_expired", "insufficient_quota"):
        assert s.fatal_error({"type": "error", "error": {"code": code}}) is True
    assert s.fatal_error({"type": "error", "error": {"code": "rate_limit_exceeded"}}) is False
    assert s.fatal_error({"type": "error", "error": {"code": None}}) is False
    assert s.fatal_error({"type": "error"}) is False
    with pytest.raises(ProviderError, match="session_expired"):
        s.handle(
            {"type": "error", "error": {"type": "invalid_request_error", "code": "session_expired", "message": "x"}}
        )


async def test_audio_and_transcript_deltas_open_the_reply_and_are_booked() -> None:
    s, out, _ = session()
    pcm = bytes(range(200)) * 24  # 4800 bytes: 100 ms at 24 kHz
    s.handle({"type": "response.output_audio.delta", "item_id": "item_A", "delta": base64.b64encode(pcm).decode()})
    assert s.reply_active and not s.awaiting_reply
    (frame,) = out
    assert type(frame) is AudioFrame and frame.pcm == pcm and frame.sample_rate == 24000
    assert s.reply_items == [["item_A", 100]]
    s.handle({"type": "response.output_audio.delta", "item_id": "item_A", "delta": base64.b64encode(pcm).decode()})
    s.handle({"type": "response.output_audio.delta", "item_id": "item_B", "delta": base64.b64encode(pcm).decode()})
    assert s.reply_items == [["item_A", 200], ["item_B", 100]]
    out.clear()
    s.handle({"type": "response.output_audio_transcript.delta", "delta": "Hel"})
    s.handle({"type": "response.output_text.delta", "delta": "lo"})
    assert out == [ReplyTranscript("Hel"), TextDelta("lo")]
    assert type(out[1]) is TextDelta and type(out[0]) is ReplyTranscript
    assert s.reply_text == ["Hel", "lo"]


async def test_response_created_and_done_book_usage_cost_and_history() -> None:
    s, out, _ = session(prices=AudioPrices(1.0, 10.0, 0.5, 2.0, 20.0, 0.25))
    s.handle({"type": "response.created", "response": {"id": "r1"}})
    assert out == [ReplyStarted(0)] and s.reply_active
    s.handle({"type": "response.output_audio_transcript.delta", "delta": "Hi."})
    usage = {
        "input_tokens": 200,
        "output_tokens": 60,
        "input_token_details": {
            "text_tokens": 120,
            "audio_tokens": 80,
            "cached_tokens": 64,
            "cached_tokens_details": {"text_tokens": 40, "audio_tokens": 24},
        },
        "output_token_details": {"text_tokens": 15, "audio_tokens": 45},
    }
    s.handle({"type": "response.done", "response": {"status": "completed", "usage": usage}})
    end = out[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    r = end.response
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_input_tokens) == (200, 60, 64)
    assert r.finish_reason == "completed" and r.message.text == "Hi." and r.model == "gpt-realtime"
    assert r.provider == "openai-realtime"
    assert r.cost is not None
    assert r.cost.input_cost == pytest.approx(((120 - 40) * 1.0 + (80 - 24) * 10.0) / 1e6)
    assert r.cost.cached_input_cost == pytest.approx((40 * 0.5 + 24 * 0.25) / 1e6)
    assert r.cost.output_cost == pytest.approx((15 * 2.0 + 45 * 20.0) / 1e6)
    assert not s.reply_active and s.history[-1] == Message.assistant("Hi.")
    assert s.usage.input_tokens == 200 and s.cost.total == pytest.approx(r.cost.total)


async def test_a_done_with_no_usage_and_no_reply_yet_still_ends_a_turn() -> None:
    s, out, _ = session()
    s.handle({"type": "response.done", "response": {"status": "cancelled"}})
    (end,) = out
    assert isinstance(end, EndOfTurn) and end.response is not None
    assert end.response.finish_reason == "cancelled" and end.response.usage.input_tokens == 0
    s.handle({"type": "response.done"})
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.finish_reason == "completed"
    s.handle({"type": "response.done", "response": {"usage": {"input_tokens": 5}}})
    assert out[-1].response.usage.input_tokens == 5 and out[-1].response.usage.cached_input_tokens == 0


async def test_speech_started_over_a_reply_is_a_barge_in_and_stopped_ends_the_users_turn() -> None:
    s, out, _ = session()
    s.handle({"type": "input_audio_buffer.speech_started", "audio_start_ms": 1500})
    assert out == [SpeechStarted(1.5)] and s.user_speaking
    s.handle({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2250})
    assert out[-1] == SpeechStopped(2.25) and not s.user_speaking and s.awaiting_reply
    out.clear()
    s.handle({"type": "response.created", "response": {}})
    s.handle({"type": "input_audio_buffer.speech_started"})
    assert [type(x) for x in out] == [ReplyStarted, Interrupt, SpeechStarted]
    assert out[1] == Interrupt("barge-in") and out[2] == SpeechStarted(0.0)
    s.handle({"type": "input_audio_buffer.speech_stopped"})
    assert out[-1] == SpeechStopped(0.0)


async def test_the_users_transcripts() -> None:
    s, out, _ = session()
    s.handle({"type": "conversation.item.input_audio_transcription.delta", "delta": "hel"})
    s.handle({"type": "conversation.item.input_audio_transcription.delta"})
    s.handle({"type": "conversation.item.input_audio_transcription.completed", "transcript": "hello"})
    assert out == [Transcript("hel", final=False), Transcript("", final=False), Transcript("hello", final=True)]
    assert s.history == [Message.user("hello")]
    with pytest.raises(KeyError):
        s.handle({"type": "conversation.item.input_audio_transcription.completed"})


async def test_a_tool_call_streams_its_arguments_under_the_name_given_when_its_item_was_added() -> None:
    s, out, _ = session()
    s.handle({"type": "response.output_item.added", "item": {"type": "message", "call_id": "x", "name": "no"}})
    assert s._calls == {}
    s.handle({"type": "response.output_item.added", "item": {"type": "function_call", "call_id": "c1", "name": "f"}})
    s.handle({"type": "response.function_call_arguments.delta", "call_id": "c1", "delta": '{"a"'})
    s.handle({"type": "response.function_call_arguments.delta", "call_id": "c2", "delta": "{}"})
    assert out == [ToolCallDelta("c1", "f", '{"a"'), ToolCallDelta("c2", "", "{}")]
    assert s.reply_active
    s.handle({"type": "response.function_call_arguments.done", "call_id": "c1", "arguments": '{"a": 1}'})
    assert out[-1] == ToolCallElement(ToolCall(id="c1", name="f", arguments='{"a": 1}'))
    assert "c1" not in s._calls and s.reply_calls == [ToolCall(id="c1", name="f", arguments='{"a": 1}')]
    s.handle({"type": "response.function_call_arguments.done", "call_id": "c2", "name": "g", "arguments": "{}"})
    assert out[-1].call.name == "g"
    s.handle({"type": "response.output_item.added"})  # no item: nothing to note
    s.handle({"type": "response.output_item.added", "item": {"type": "function_call"}})
    assert s._calls == {"": ""}


async def test_rate_limits_are_kept_and_published() -> None:
    s, _, bus = session()
    limits = [{"name": "requests", "limit": 10, "remaining": 9, "reset_seconds": 0.5}, {"name": "tokens"}]
    s.handle({"type": "rate_limits.updated", "rate_limits": limits})
    assert s.rate_limits == limits
    bus.flush()
    (event,) = [e for e in bus.history if isinstance(e, RateLimitsUpdated)]
    assert event.provider == "openai-realtime" and event.model == "gpt-realtime"
    assert event.limits == (RateLimit("requests", 10, 9, 0.5), RateLimit("tokens", 0, 0, 0.0))
    assert type(event.limits[0].reset_seconds) is float and type(event.limits[0].limit) is int


async def test_error_events_are_typed_with_their_code_or_type() -> None:
    s, out, _ = session()
    s.handle({"type": "error", "error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "slow"}})
    s.handle({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    s.handle({"type": "error", "error": {"code": "", "type": None, "message": "odd"}})
    s.handle({"type": "error"})
    errors = [x.error for x in out if isinstance(x, ErrorElement)]
    assert len(errors) == 4
    assert isinstance(errors[0], RateLimitError) and str(errors[0]).endswith("server error (rate_limit_exceeded): slow")
    assert not isinstance(errors[1], RateLimitError) and "(invalid_request_error): bad" in str(errors[1])
    assert "server error: odd" in str(errors[2])
    assert "server error: " in str(errors[3])


def test_an_event_with_no_type_is_malformed_and_an_unknown_type_is_ignored() -> None:
    s, out, _ = session()
    with pytest.raises(MalformedEventError, match="has no type"):
        s.handle({"event_id": "e1"})
    with pytest.raises(MalformedEventError):
        s.handle({"type": 7})
    s.handle({"type": "conversation.item.added", "item": {}})
    s.handle({"type": "response.output_audio.done"})
    assert out == []


async def test_a_reply_with_tool_calls_runs_them_and_asks_again() -> None:
    @tool
    def f(a: int) -> str:
        """F."""
        return str(a * 2)

    s, _, _ = session(tools=[f])
    s.handle({"type": "response.created", "response": {}})
    s.handle({"type": "response.output_item.added", "item": {"type": "function_call", "call_id": "c1", "name": "f"}})
    s.handle({"type": "response.function_call_arguments.done", "call_id": "c1", "arguments": '{"a": 21}'})
    s.handle({"type": "response.done", "response": {"status": "completed"}})
    for _ in range(200):
        if len(sent(s)) >= 2:
            break
        await asyncio.sleep(0.01)
    events = sent(s)
    assert events[-2:] == [
        {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c1", "output": "42"}},
        {"type": "response.create"},
    ]


def test_the_key_is_registered_as_a_secret() -> None:
    key = "plainrealtimesecret" + uuid.uuid4().hex  # the secret registry is global: a key of this test only
    assert key in redact(f"refused {key}")
    OpenAIRealtime(api_key=key)
    assert key not in redact(f"refused {key}")


async def test_a_response_done_with_no_output_is_a_reply_of_its_own_not_the_last_one_again() -> None:
    s, out, _ = session()
    s.handle({"type": "response.output_audio_transcript.delta", "delta": "First."})
    s.handle({"type": "response.done", "response": {"status": "completed"}})
    s.handle({"type": "response.done", "response": {"status": "cancelled"}})
    ends = [x.response for x in out if isinstance(x, EndOfTurn)]
    assert [r.message.text for r in ends if r is not None] == ["First.", ""]
    assert [m.text for m in s.history] == ["First.", ""]


async def test_missing_token_counts_are_zero() -> None:
    s, out, _ = session(prices=AudioPrices(1.0, 10.0, 0.5, 2.0, 20.0, 0.25))
    s.handle({"type": "response.done", "response": {"usage": {"input_token_details": {}, "output_token_details": {}}}})
    s.handle({"type": "response.done", "response": {"usage": {"input_token_details": {"cached_tokens_details": {}}}}})
    for end in [x.response for x in out if isinstance(x, EndOfTurn)]:
        assert end is not None and end.cost is not None
        assert (end.cost.input_cost, end.cost.cached_input_cost, end.cost.output_cost) == (0.0, 0.0, 0.0)
        assert (end.usage.input_tokens, end.usage.output_tokens, end.usage.cached_input_tokens) == (0, 0, 0)


async def test_a_finished_call_whose_item_was_never_announced_has_an_empty_name() -> None:
    s, out, _ = session()
    s.handle({"type": "response.created", "response": {}})
    s.handle({"type": "response.function_call_arguments.done", "call_id": "c9", "arguments": "{}"})
    assert out[-1] == ToolCallElement(ToolCall(id="c9", name="", arguments="{}"))


def test_no_rate_limits_before_the_server_sends_them_and_a_nameless_limit() -> None:
    s, _, bus = session()
    assert s.rate_limits == []
    s.handle({"type": "rate_limits.updated", "rate_limits": [{"limit": 3}]})
    bus.flush()
    (event,) = [e for e in bus.history if isinstance(e, RateLimitsUpdated)]
    assert event.limits == (RateLimit("", 3, 0, 0.0),)


def test_an_error_with_no_message_says_nothing_more() -> None:
    s, out, _ = session()
    s.handle({"type": "error", "error": {"code": "invalid_event"}})
    s.handle({"type": "error"})
    assert [str(x.error) for x in out] == [
        "openai-realtime: server error (invalid_event): ",
        "openai-realtime: server error: ",
    ]


def test_an_event_with_no_type_names_the_provider_and_keeps_the_start_of_the_event() -> None:
    s, _, _ = session()
    event = {"event_id": "e" * 300}
    with pytest.raises(MalformedEventError) as info:
        s.handle(event)
    assert info.value.provider == "openai-realtime"
    assert info.value.line == str(event)[:200]
