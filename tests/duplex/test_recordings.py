"""OpenAI Realtime and Gemini Live driven by recorded event sequences (tests/duplex/recordings/*.jsonl).

Each recording holds the server's events in their documented shapes and the
client events it expects in between; the replay server checks those, and
these tests check what rxkit made of the server's side.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rxkit.duplex import GeminiLive, OpenAIRealtime
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    MessageElement,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    ToolCallDelta,
    ToolCallElement,
    Transcript,
)
from rxkit.graph import astream
from rxkit.operators import duplex, heard
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus, RateLimitsUpdated
from rxkit.tools import tool
from tests.duplex.replay_server import RECORDINGS, ReplayServer
from tests.duplex.test_openai_realtime import fake_speaker, silence

pytestmark = pytest.mark.timeout(60)


def test_every_recording_says_where_its_shapes_come_from() -> None:
    names = sorted(p.name for p in RECORDINGS.glob("*.jsonl"))
    assert names == [
        "gemini_live_conversation.jsonl",
        "openai_realtime_conversation.jsonl",
        "openai_realtime_dropped.jsonl",
    ]
    for name in names:
        header = json.loads((RECORDINGS / name).read_text().splitlines()[0])
        assert header["recording"] and ("openai-python" in header["shapes"] or "python-genai" in header["shapes"])


async def _run(s: Any, mic: Any, played_s: float) -> list[Any]:
    out: list[Any] = []
    graph = lambda o: heard(s)(fake_speaker(played_s)(duplex(s)(o)))  # noqa: E731
    async for x in astream(from_async_iterable(mic(out)), through=graph):
        out.append(x)
    return out


def _said(message: Any) -> str:
    return str(message.tool_results[0].content if message.role == "tool" else message.text)


async def _until(out: list[Any], test: Any) -> None:
    while not test(out):
        await asyncio.sleep(0.005)


async def test_openai_realtime_replays_a_recorded_conversation() -> None:
    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return f"noon in {city}"

    async with ReplayServer("openai_realtime_conversation.jsonl") as server:
        bus = EventBus()
        s = OpenAIRealtime(
            base_url=server.url + "/v1", api_key="sk-test-000000000000", tools=[get_time], bus=bus, finish_grace_s=0.5
        )

        def mic(out: list[Any]) -> Any:
            async def frames() -> AsyncIterator[Any]:
                for f in silence(400, rate=24000):
                    yield f
                await _until(out, lambda o: sum(isinstance(x, EndOfTurn) for x in o) >= 1)
                yield Transcript("What time is it in Paris?")
                await _until(out, lambda o: sum(isinstance(x, EndOfTurn) for x in o) >= 4)

            return frames

        out = await _run(s, mic, played_s=0.2)
        assert server.mismatches == [] and server.unexpected == []
        assert server.finished == 1 and server.audio_in == [20]
        # the user's side: server VAD events and both transcripts
        kinds = [type(x) for x in out]
        assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped)
        assert [x.text for x in out if isinstance(x, Transcript) and not x.final][:2] == ["Hello, ", "who are you?"]
        assert [x.text for x in out if isinstance(x, Transcript) and x.final] == [
            "Hello, who are you?",
            "Thanks, that's all.",
        ]
        # audio out: 3 + 5 + 1 deltas of 100 ms at 24 kHz
        audio = [x for x in out if type(x) is AudioFrame]
        assert [len(a.pcm) for a in audio] == [4800] * 9 and {a.sample_rate for a in audio} == {24000}
        # the tool call: arguments streamed, the name from output_item.added (the done event has none)
        deltas = [x for x in out if isinstance(x, ToolCallDelta)]
        assert "".join(d.arguments for d in deltas) == '{"city": "Paris"}' and len(deltas) == 3
        assert [(x.call.id, x.call.name) for x in out if isinstance(x, ToolCallElement)] == [
            ("call_Gz2Fp1", "get_time")
        ]
        assert [x.message.tool_results[0].content for x in out if isinstance(x, MessageElement)] == ["noon in Paris"]
        # the barge-in: one Interrupt, the reply cut at the 200 ms played (checked by the server's expect), history
        # as heard: 200 of the 500 ms received is 2/5 of its transcript, back to a word
        assert sum(isinstance(x, Interrupt) for x in out) == 1
        ends = [x.response for x in out if isinstance(x, EndOfTurn)]
        assert [r.finish_reason for r in ends if r is not None] == ["completed", "completed", "cancelled", "completed"]
        assert [(m.role, _said(m)) for m in s.history] == [
            ("user", "Hello, who are you?"),
            ("assistant", "I am your assistant."),
            ("user", "What time is it in Paris?"),
            ("assistant", ""),
            ("tool", "noon in Paris"),
            ("assistant", "It is noon in"),
            ("user", "Thanks, that's all."),
            ("assistant", "Goodbye!"),
        ]
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)).endswith("Goodbye!")
        # usage and cost per response (gpt-realtime from genai-prices), the error in-band, rate limits on the bus
        first = ends[0]
        assert first is not None and first.cost is not None
        assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.cached_input_tokens) == (200, 60, 64)
        assert first.cost.total == pytest.approx(((56 * 4 + 80 * 32) + 64 * 0.4 + (15 * 16 + 45 * 64)) / 1e6)
        errors = [x.error for x in out if isinstance(x, ErrorElement)]
        assert len(errors) == 1 and "invalid_event" in str(errors[0]) and "'type' field is missing" in str(errors[0])
        bus.flush()
        limits = [e for e in bus.history if isinstance(e, RateLimitsUpdated)]
        assert len(limits) == 3 and limits[0].limits[1].remaining == 38776


async def test_gemini_live_replays_a_recorded_conversation_with_go_away_and_resumption() -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async with ReplayServer("gemini_live_conversation.jsonl") as server:
        s = GeminiLive(base_url=server.url, api_key="AIza-test-0000000000", tools=[get_weather], bus=EventBus())

        def mic(out: list[Any]) -> Any:
            async def frames() -> AsyncIterator[Any]:
                for f in silence(400):
                    yield f
                await _until(out, lambda o: s.connections == 2 and sum(isinstance(x, EndOfTurn) for x in o) >= 3)
                yield Transcript("One more thing.")
                await _until(out, lambda o: sum(isinstance(x, EndOfTurn) for x in o) >= 4)

            return frames

        out = await _run(s, mic, played_s=0.2)
        assert server.mismatches == [] and server.unexpected == []
        assert server.connections == 2 and server.finished == 2 and server.audio_in == [20, 0]
        assert s.go_away_time_left == "10s" and s.resumption_handle == "Cg4KDHNlc3Npb24tNzcxMg"
        assert [x.text for x in out if isinstance(x, Transcript) and x.final] == [
            "What's the weather in Paris?",
            "Thank you!",
        ]
        assert sum(isinstance(x, Interrupt) for x in out) == 1
        audio = [x for x in out if type(x) is AudioFrame]
        assert len(audio) == 7 and {len(a.pcm) for a in audio} == {4800}
        ends = [x.response for x in out if isinstance(x, EndOfTurn)]
        assert [r.finish_reason for r in ends if r is not None] == ["completed", "cancelled", "completed", "completed"]
        # the user's turn ends before the tool call it asked for; the interrupted reply is kept as heard (200 of
        # the 500 ms received)
        assert [(m.role, _said(m)) for m in s.history] == [
            ("user", "What's the weather in Paris?"),
            ("assistant", ""),
            ("tool", "sunny in Paris"),
            ("assistant", "It is sunny in Paris"),
            ("user", "Thank you!"),
            ("assistant", "You're welcome."),
            ("user", "One more thing."),
            ("assistant", "Yes?"),
        ]
        welcome = ends[2]
        assert welcome is not None and welcome.cost is not None
        assert welcome.cost.total == pytest.approx((40 * 0.5 + 80 * 3.0 + 5 * 2.0 + 45 * 12.0) / 1e6)


async def test_openai_realtime_replays_a_dropped_connection_resumed_with_the_history() -> None:
    async with ReplayServer("openai_realtime_dropped.jsonl") as server:
        s = OpenAIRealtime(base_url=server.url + "/v1", api_key="sk-test-000000000000", bus=EventBus())

        def mic(out: list[Any]) -> Any:
            async def inputs() -> AsyncIterator[Any]:
                yield Transcript("first question")
                await _until(out, lambda o: s.connections == 2 and any(isinstance(x, EndOfTurn) for x in o))
                yield Transcript("second question")
                await _until(out, lambda o: sum(isinstance(x, EndOfTurn) for x in o) >= 2)

            return inputs

        out = await _run(s, mic, played_s=0.0)
        # the second server session saw the first exchange re-sent, then the new question (its expects)
        assert server.mismatches == [] and server.unexpected == []
        assert server.connections == 2 and server.finished == 2
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "First answer.Second answer."
        assert [m.text for m in s.history] == ["first question", "First answer.", "second question", "Second answer."]
        assert not [x for x in out if isinstance(x, ErrorElement)]
