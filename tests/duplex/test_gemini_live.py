"""Gemini Live over a loopback WebSocket server that speaks BidiGenerateContent (gemini_live_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rxkit.duplex import AudioPrices, GeminiLive
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    Interrupt,
    MessageElement,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    ToolCallElement,
    Transcript,
)
from rxkit.errors import AuthenticationError
from rxkit.graph import astream
from rxkit.operators import duplex, heard
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus
from rxkit.tools import tool
from tests.duplex.gemini_live_server import API_KEY, LiveServer, Reply
from tests.duplex.test_openai_realtime import fake_speaker, other_tasks, settle, silence, speech

pytestmark = pytest.mark.timeout(60)


def session(server: LiveServer, **kw: Any) -> GeminiLive:
    kw.setdefault("bus", EventBus())
    return GeminiLive("gemini-live-2.5-flash-preview", base_url=server.url, api_key=API_KEY, **kw)


async def test_audio_both_ways_transcripts_and_usage() -> None:
    async with LiveServer() as server:
        server.transcripts.append("tell me a joke")
        server.replies.append(Reply(text="Why did the chicken cross the road?", audio_ms=500))
        prices = AudioPrices(text_input=0.5, audio_input=3.0, text_output=2.0, audio_output=12.0)
        s = session(server, prices=prices)
        before = other_tasks()
        # 48 kHz stereo mic frames: converted to the 16 kHz mono the API takes
        frames = [AudioFrame(f.pcm, 16000) for f in speech(300) + silence(700)]
        out = [x async for x in astream(frames, through=duplex(s))]
        await settle()
        setup = server.setups[0]
        assert setup["model"] == "models/gemini-live-2.5-flash-preview"
        assert setup["generationConfig"] == {"responseModalities": ["AUDIO"]}
        assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
        audio_in = [m for m in server.received if "realtimeInput" in m and "audio" in m["realtimeInput"]]
        assert len(audio_in) == 50
        kinds = [type(x) for x in out]
        assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped)
        assert [x.text for x in out if isinstance(x, Transcript) and x.final] == ["tell me a joke"]
        audio = [x for x in out if type(x) is AudioFrame]
        assert {a.sample_rate for a in audio} == {24000}
        assert sum(len(a.pcm) for a in audio) == 24000 * 2 * 500 // 1000
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "Why did the chicken cross the road?"
        assert len([x for x in out if isinstance(x, EndOfTurn)]) == 1
        assert [(m.role, m.text) for m in s.history] == [
            ("user", "tell me a joke"),
            ("assistant", "Why did the chicken cross the road?"),
        ]
        assert (s.usage.input_tokens, s.usage.output_tokens) == (120, 50)
        (end,) = [x for x in out if isinstance(x, EndOfTurn)]
        assert end.response is not None and end.response.usage.output_tokens == 50
        # audio and text priced apart: 40 text + 80 audio in, 5 text + 45 audio out
        assert end.response.cost.input_cost == pytest.approx((40 * 0.5 + 80 * 3.0) / 1e6)
        assert end.response.cost.output_cost == pytest.approx((5 * 2.0 + 45 * 12.0) / 1e6)
        assert s.resumption_handle == "handle-1"
        assert server.closed_connections == 1 and s.client.closed
        assert other_tasks() <= before


async def test_tool_call_and_tool_response() -> None:
    @tool
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return f"facts about {topic}"

    async with LiveServer() as server:
        server.replies.extend(
            [Reply(tool=("lookup", '{"topic": "owls"}')), Reply(text="Owls are birds.", audio_ms=200)]
        )
        s = session(server, tools=[lookup])
        out = [x async for x in astream([Transcript("tell me about owls")], through=duplex(s))]
        assert server.setups[0]["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
        calls = [x.call for x in out if isinstance(x, ToolCallElement)]
        assert [(c.name, c.arguments) for c in calls] == [("lookup", '{"topic": "owls"}')]
        results = [x for x in out if isinstance(x, MessageElement)]
        assert results[0].message.tool_results[0].content == "facts about owls"
        response = next(m for m in server.received if "toolResponse" in m)
        assert response["toolResponse"]["functionResponses"] == [
            {"id": calls[0].id, "name": "lookup", "response": {"output": "facts about owls"}}
        ]
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "Owls are birds."


async def test_a_tool_call_the_server_withdraws_is_cancelled_and_not_answered() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def book(seat: str) -> str:
        """Book a seat."""
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "booked"

    async with LiveServer() as server:
        server.replies.extend([Reply(tool=("book", '{"seat": "12A"}')), Reply(text="Yes?", audio_ms=100)])
        s = session(server, tools=[book])

        async def mic() -> AsyncIterator[Any]:
            for f in speech(300) + silence(600):
                yield f
            await started.wait()  # the user talks while the tool runs: the server withdraws the call
            for f in speech(200) + silence(600):
                yield f
            await cancelled.wait()

        out = [x async for x in astream(from_async_iterable(mic), through=duplex(s))]
        assert cancelled.is_set()
        assert not any("toolResponse" in m for m in server.received)  # nothing answered for a withdrawn call
        (call,) = [x.call for x in out if isinstance(x, ToolCallElement)]
        (withdrawn,) = [m for m in s.history if m.role == "tool"]  # the history stays whole for a new session
        assert withdrawn.tool_results[0].call_id == call.id and withdrawn.tool_results[0].is_error
        assert "withdrew" in withdrawn.tool_results[0].content
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "Yes?"  # the next turn answered


async def test_interrupted_flushes_and_history_keeps_what_was_heard() -> None:
    async with LiveServer() as server:
        long = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
        server.replies.extend([Reply(text=long, audio_ms=2000, pace_s=0.03), Reply(text="Yes?", audio_ms=100)])
        s = session(server)
        replying = asyncio.Event()

        async def mic() -> AsyncIterator[Any]:
            for f in speech(300) + silence(600):
                yield f
            await replying.wait()
            for f in speech(200) + silence(600):
                yield f

        out = []
        graph = lambda o: heard(s)(fake_speaker(0.4)(duplex(s)(o)))  # noqa: E731
        async for x in astream(from_async_iterable(mic), through=graph):
            out.append(x)
            if sum(type(y) is AudioFrame for y in out) >= 8:
                replying.set()
        assert len([x for x in out if isinstance(x, Interrupt)]) == 1
        assistant = [m.text for m in s.history if m.role == "assistant"]
        cut = next(i for i, x in enumerate(out) if isinstance(x, Interrupt))
        got_text = "".join(x.text for x in out[:cut] if isinstance(x, ReplyTranscript))
        got_s = sum(x.duration for x in out[:cut] if type(x) is AudioFrame)
        assert got_s > 0.4 and assistant[0] and got_text.startswith(assistant[0])
        assert len(assistant[0]) < len(got_text)  # what arrived but was not played is not in the history
        assert abs(len(assistant[0]) / len(got_text) - 0.4 / got_s) < 0.15
        assert assistant[-1] == "Yes?"


async def test_go_away_reconnects_with_the_resumption_handle_before_the_cut() -> None:
    async with LiveServer(go_away_after=1, go_away_grace_s=5.0) as server:
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        s = session(server)
        first = asyncio.Event()

        async def inputs() -> AsyncIterator[Any]:
            yield Transcript("first")
            await first.wait()
            while s.connections < 2:
                await asyncio.sleep(0.01)
            yield Transcript("second")

        out = []
        async for x in astream(from_async_iterable(inputs), through=duplex(s)):
            out.append(x)
            if isinstance(x, EndOfTurn):
                first.set()
        assert server.connections == 2
        assert server.cut_by_server == 0  # the client left before the server's deadline
        assert s.go_away_time_left == "5s"
        assert server.setups[1]["sessionResumption"] == {"handle": "handle-1"}
        # the resumed server session had the first exchange
        assert server.histories[1][:2] == [{"role": "user", "text": "first"}, {"role": "model", "text": "One."}]
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "One.Two."


async def test_a_wrong_key_closes_with_1007_and_is_an_authentication_error() -> None:
    async with LiveServer() as server:
        s = GeminiLive(base_url=server.url, api_key="AIzaSyWrong-key-000000000000000000000")
        with pytest.raises(AuthenticationError) as info:
            _ = [x async for x in astream([Transcript("hi")], through=duplex(s))]
        assert "API key not valid" in str(info.value)
        assert "AIzaSyWrong" not in str(info.value)
        assert server.connections == 1  # not retried
