"""OpenAI Realtime over a loopback WebSocket server that speaks the GA protocol (openai_realtime_server.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest
import reactivex
from reactivex import Observable, abc

from rxkit.duplex import OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply, tone
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    Interrupt,
    MessageElement,
    PlaybackFinished,
    ReplyStarted,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    ToolCallDelta,
    ToolCallElement,
    Transcript,
)
from rxkit.errors import AuthenticationError, MalformedEventError, RateLimitError, StreamInterruptedError
from rxkit.graph import astream
from rxkit.operators import duplex, heard
from rxkit.scheduling import from_async_iterable
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import (
    EventBus,
    RateLimit,
    RateLimitsUpdated,
    ToolCallCompleted,
    ToolCallStarted,
    VoiceTurnLatency,
)
from rxkit.tools import tool

pytestmark = pytest.mark.timeout(60)


def speech(ms: int = 300, rate: int = 16000, block_ms: int = 20) -> list[AudioFrame]:
    """A loud tone in ``block_ms`` frames (the loopback server's VAD hears it as speech)."""
    pcm = tone(ms, rate)
    step = rate * 2 * block_ms // 1000
    return [AudioFrame(pcm[i : i + step], rate) for i in range(0, len(pcm), step)]


def silence(ms: int = 700, rate: int = 16000, block_ms: int = 20) -> list[AudioFrame]:
    step = rate * 2 * block_ms // 1000
    return [AudioFrame(bytes(step), rate) for _ in range(ms // block_ms)]


def session(server: RealtimeServer, **kw: Any) -> OpenAIRealtime:
    kw.setdefault("bus", EventBus())
    return OpenAIRealtime("gpt-realtime", base_url=server.url, api_key=API_KEY, **kw)


async def collect(source: Any, stage: Any) -> list[Any]:
    return [x async for x in astream(source, through=stage)]


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_audio_both_ways_transcripts_usage_and_cost() -> None:
    async with RealtimeServer() as server:
        server.transcripts.append("what is the weather")
        server.replies.append(Reply(text="It is sunny today.", audio_ms=600))
        bus = EventBus()
        s = session(server, bus=bus)
        before = other_tasks()
        out = await collect(speech(300) + silence(700), duplex(s))
        await settle()
        # in: 1 s of 16 kHz frames went out resampled to 24 kHz PCM16
        appended = [e for e in server.received if e["type"] == "input_audio_buffer.append"]
        assert len(appended) == 50
        assert server.received[0]["type"] == "session.update"
        assert server.received[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        # out: the user's side, then the reply's audio and transcript, then the end of the turn
        kinds = [type(x) for x in out]
        assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(ReplyStarted)
        assert [x.text for x in out if isinstance(x, Transcript) and x.final] == ["what is the weather"]
        assert (
            "".join(x.text for x in out if isinstance(x, Transcript) and not x.final).strip() == "what is the weather"
        )
        audio = [x for x in out if type(x) is AudioFrame]
        assert {a.sample_rate for a in audio} == {24000}
        assert sum(len(a.pcm) for a in audio) == 24000 * 2 * 600 // 1000
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "It is sunny today."
        end = [x for x in out if isinstance(x, EndOfTurn)]
        assert len(end) == 1 and end[0].response is not None
        usage, cost = end[0].response.usage, end[0].response.cost
        assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (200, 60, 64)
        # audio and text priced apart: (56 text * 4 + 80 audio * 32) in, 64 cached * 0.4, 15 * 16 + 45 * 64 out
        assert cost.input_cost == pytest.approx((56 * 4 + 80 * 32) / 1e6)
        assert cost.cached_input_cost == pytest.approx(64 * 0.4 / 1e6)
        assert cost.output_cost == pytest.approx((15 * 16 + 45 * 64) / 1e6)
        assert [(m.role, m.text) for m in s.history] == [
            ("user", "what is the weather"),
            ("assistant", "It is sunny today."),
        ]
        assert s.rate_limits[0]["name"] == "requests"
        assert [e for e in bus.history if isinstance(e, VoiceTurnLatency)]
        # closed with the graph: socket, client session and tasks
        assert server.closed_connections == 1
        assert s.client.closed
        assert other_tasks() <= before
        assert not server.errors


async def test_tool_call_with_streamed_arguments_in_the_middle_of_a_session() -> None:
    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return f"noon in {city}"

    async with RealtimeServer() as server:
        server.replies.extend([Reply(tool=("get_time", '{"city": "Paris"}')), Reply(text="It is noon.", audio_ms=200)])
        bus = EventBus()
        s = session(server, tools=[get_time], bus=bus)
        out = await collect([Transcript("what time is it in Paris")], duplex(s))
        deltas = [x for x in out if isinstance(x, ToolCallDelta)]
        assert len(deltas) > 1 and "".join(d.arguments for d in deltas) == '{"city": "Paris"}'
        assert {d.name for d in deltas} == {"get_time"}
        calls = [x for x in out if isinstance(x, ToolCallElement)]
        assert [c.call.name for c in calls] == ["get_time"]
        results = [x for x in out if isinstance(x, MessageElement)]
        assert results[0].message.tool_results[0].content == "noon in Paris"
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "It is noon."
        assert len([x for x in out if isinstance(x, EndOfTurn)]) == 2
        sent = [e for e in server.received if e["type"] == "conversation.item.create"]
        assert sent[-1]["item"] == {
            "type": "function_call_output",
            "call_id": calls[0].call.id,
            "output": "noon in Paris",
        }
        assert server.received[0]["session"]["tools"][0]["name"] == "get_time"
        assert [type(e) for e in bus.history if isinstance(e, (ToolCallStarted, ToolCallCompleted))] == [
            ToolCallStarted,
            ToolCallCompleted,
        ]
        assert not server.errors
        assert [m.role for m in s.history] == ["user", "assistant", "tool", "assistant"]


def fake_speaker(played_s: float) -> Any:
    """Stands in for the speaker: an Interrupt cuts the reply after ``played_s`` seconds were heard."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            def on_next(x: Any) -> None:
                observer.on_next(x)
                if isinstance(x, Interrupt):
                    observer.on_next(PlaybackFinished(0.0, played_s, interrupted=True))

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return operator


async def test_barge_in_cancels_and_truncates_at_what_was_played() -> None:
    async with RealtimeServer() as server:
        long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
        server.replies.extend([Reply(text=long, audio_ms=2000, pace_s=0.03), Reply(text="Sure.", audio_ms=200)])
        store = MemoryStore()
        s = session(server, store=store, session_id="talk")
        replying = asyncio.Event()

        async def mic() -> AsyncIterator[Any]:
            for f in speech(300) + silence(600):
                yield f
            await replying.wait()  # 800 ms of the reply have arrived
            for f in speech(200) + silence(600):  # the user talks over the reply
                yield f

        out = []
        graph = lambda o: heard(s)(fake_speaker(0.5)(duplex(s)(o)))  # noqa: E731
        async for x in astream(from_async_iterable(mic), through=graph):
            out.append(x)
            if sum(type(y) is AudioFrame for y in out) >= 8:
                replying.set()
        interrupts = [i for i, x in enumerate(out) if isinstance(x, Interrupt)]
        assert len(interrupts) == 1
        # the server cancelled the reply (turn detected); rxkit truncated its item at the 500 ms played
        ends = [x for x in out if isinstance(x, EndOfTurn)]
        assert ends[0].response is not None and ends[0].response.finish_reason == "cancelled"
        assert len(server.truncated) == 1 and server.truncated[0][1] == 500
        truncate = next(e for e in server.received if e["type"] == "conversation.item.truncate")
        assert truncate["content_index"] == 0 and truncate["audio_end_ms"] == 500
        # the saved history holds what was heard, not the whole reply
        assistant = [m.text for m in s.history if m.role == "assistant"]
        cut = next(i for i, x in enumerate(out) if isinstance(x, Interrupt))
        got_text = "".join(x.text for x in out[:cut] if isinstance(x, ReplyTranscript))
        got_s = sum(x.duration for x in out[:cut] if type(x) is AudioFrame)
        assert got_s > 0.5 and assistant[0] and got_text.startswith(assistant[0])
        assert len(assistant[0]) < len(got_text)  # what arrived but was not played is not in the history
        assert abs(len(assistant[0]) / len(got_text) - 0.5 / got_s) < 0.15
        assert assistant[-1] == "Sure."
        assert not server.errors
        # saved as heard; a later session on the same store goes on from there, the server seeded with it
        assert await store.load("talk") == s.history
        again = session(server, store=store, session_id="talk")
        await collect([Transcript("and then?")], duplex(again))
        seeded = server.conversations[-1]
        assert [m["text"] for m in seeded[: len(s.history)]] == [m.text for m in s.history]
        assert [m.text for m in await store.load("talk")][-2:] == ["and then?", "Hello there, how can I help?"]


async def test_error_event_goes_out_in_band_and_the_session_goes_on() -> None:
    error = {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "Rate limit reached for requests"}
    async with RealtimeServer(error_on_response=error) as server:
        server.replies.append(Reply(text="Back again.", audio_ms=100))
        s = session(server)
        out = await collect([Transcript("hi"), Transcript("again")], duplex(s))
        errors = [x for x in out if isinstance(x, ErrorElement)]
        assert len(errors) == 1 and isinstance(errors[0].error, RateLimitError)
        assert "rate_limit_exceeded" in str(errors[0].error)
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "Back again."


async def test_a_malformed_client_event_is_refused_by_the_server_and_reported() -> None:
    async with RealtimeServer() as server:
        s = session(server)
        s.send([{"type": "input_audio_buffer.append"}, {"type": "response.creat"}])
        out = await collect([Transcript("hi")], duplex(s))
        errors = [str(x.error) for x in out if isinstance(x, ErrorElement)]
        assert len(errors) == 2
        assert "missing_required_parameter" in errors[0] and "'audio'" in errors[0]
        assert "invalid_value" in errors[1] and "response.creat" in errors[1]
        assert [e["code"] for e in server.errors] == ["missing_required_parameter", "invalid_value"]


async def test_wrong_key_is_an_authentication_error_without_the_key() -> None:
    async with RealtimeServer() as server:
        s = OpenAIRealtime(base_url=server.url, api_key="sk-wrong-key-000000000000")
        with pytest.raises(AuthenticationError) as info:
            await collect([Transcript("hi")], duplex(s))
        assert info.value.status == 401
        assert "sk-wrong-key" not in str(info.value)
        assert s.client.closed


async def test_disposal_closes_the_socket_and_leaves_no_task() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(audio_ms=5000, pace_s=0.05))
        s = session(server)
        before = other_tasks()
        async for x in astream(
            reactivex.concat(reactivex.from_iterable([Transcript("talk")]), reactivex.never()), through=duplex(s)
        ):
            if type(x) is AudioFrame:
                break  # leaving the loop disposes the graph mid-reply
        await settle()
        assert server.closed_connections == 1
        assert s.client.closed
        assert other_tasks() <= before
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        mine = [c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port]
        assert mine == []  # no socket of ours to the server is left open


async def test_rxkit_turn_detection_commits_and_barges_in_on_real_speech(librivox: list[Any]) -> None:
    from rxkit.audio.wav import read_wav
    from rxkit.operators import turn_detector, vad

    first, second = read_wav(librivox[0]), read_wav(librivox[1])
    step = 16000 * 2 * 20 // 1000

    def blocks(frame: Any) -> list[AudioFrame]:
        pcm = frame.pcm
        return [AudioFrame(pcm[i : i + step], 16000) for i in range(0, len(pcm) - step + 1, step)]

    async with RealtimeServer() as server:
        server.replies.extend([Reply(text="a long answer " * 10, audio_ms=3000, pace_s=0.03), Reply(text="Ok.")])
        s = session(server, server_vad=False)
        replying = asyncio.Event()

        async def mic() -> AsyncIterator[Any]:
            for f in blocks(first) + silence(1000):
                yield f
            await replying.wait()
            for f in blocks(second)[:100] + silence(1000):  # two seconds of speech over the reply
                yield f

        out = []
        graph = lambda o: heard(s)(fake_speaker(0.3)(duplex(s)(turn_detector(frames=True)(vad()(o)))))  # noqa: E731
        async for x in astream(from_async_iterable(mic), through=graph):
            out.append(x)
            if sum(type(y) is AudioFrame for y in out) >= 8:
                replying.set()
        assert server.received[0]["session"]["audio"]["input"]["turn_detection"] is None
        kinds = [e["type"] for e in server.received if e["type"] != "input_audio_buffer.append"]
        # rxkit's turn detector ended the first turn (commit + response.create), the second one cut the reply
        assert kinds.count("input_audio_buffer.commit") == 2
        assert kinds.index("response.cancel") < kinds.index("conversation.item.truncate")
        assert server.truncated and server.truncated[0][1] == 300
        ends = [x.response.finish_reason for x in out if isinstance(x, EndOfTurn) and x.response is not None]
        assert ends == ["cancelled", "completed"]
        speech_started = [i for i, x in enumerate(out) if isinstance(x, SpeechStarted)]
        barge_in = [i for i, x in enumerate(out) if isinstance(x, Interrupt)]
        assert len(barge_in) == 1 and speech_started[0] < barge_in[0] < speech_started[1]  # ahead of the speech
        assert not server.errors


async def test_an_image_goes_in_as_a_user_item_before_the_question() -> None:
    async with RealtimeServer() as server:
        s = session(server)
        png = b"\x89PNG\r\n\x1a\n" + bytes(16)
        await collect([ImageFrame(png, "image/png"), Transcript("what is in the picture?")], duplex(s))
        items = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
        assert items[0] == {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}
            ],
        }
        assert items[1]["content"] == [{"type": "input_text", "text": "what is in the picture?"}]
        assert not server.errors


async def test_a_drop_while_audio_streams_in_reconnects_and_goes_on() -> None:
    async with RealtimeServer(drop_after=1) as server:
        server.transcripts.extend(["first", "second"])
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        s = session(server)

        async def mic() -> AsyncIterator[Any]:
            for f in speech(300) + silence(700):
                yield f
            for f in silence(600):  # the mic goes on while the socket drops and comes back
                await asyncio.sleep(0.002)
                yield f
            for f in speech(300) + silence(700):
                yield f

        out = [x async for x in astream(from_async_iterable(mic), through=duplex(s))]
        assert server.connections == 2
        assert [x for x in out if isinstance(x, ErrorElement)] == []
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "One.Two."
        assert [m.text for m in s.history] == ["first", "One.", "second", "Two."]


async def test_a_socket_cut_mid_reply_with_no_reconnect_left_fails_keeping_the_partial_transcript() -> None:
    async with RealtimeServer(cut_mid_reply=True) as server:
        server.replies.append(Reply(text="one two three four five six seven eight", audio_ms=800))
        s = session(server, reconnects=0)
        out: list[Any] = []
        with pytest.raises(StreamInterruptedError) as info:
            async for x in astream([Transcript("count")], through=duplex(s)):
                out.append(x)
        received = "".join(x.text for x in out if isinstance(x, ReplyTranscript))
        assert received and "one two three four five six seven eight".startswith(received.strip())
        assert info.value.partial == received and len(received) < len("one two three four five six seven eight")
        assert s.client.closed


async def test_a_malformed_server_event_is_a_typed_error_naming_its_type() -> None:
    bad = {"type": "response.output_audio.delta", "item_id": "item_1", "response_id": "resp_1"}  # no "delta"
    async with RealtimeServer(greet=[bad]) as server:
        s = session(server)
        with pytest.raises(MalformedEventError) as info:
            await collect([Transcript("hi")], duplex(s))
        assert "'response.output_audio.delta'" in str(info.value) and "delta" in str(info.value)
        assert s.client.closed


async def test_rate_limits_updated_is_published_on_the_bus() -> None:
    async with RealtimeServer() as server:
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        bus = EventBus()
        s = session(server, bus=bus)
        await collect([Transcript("first"), Transcript("second")], duplex(s))
        bus.flush()
        updates = [e for e in bus.history if isinstance(e, RateLimitsUpdated)]
        assert len(updates) == 2  # the server sends one after each response.created
        assert updates[0].provider == "openai-realtime" and updates[0].model == "gpt-realtime"
        assert updates[0].limits == (
            RateLimit("requests", 5000, 4999, 0.012),
            RateLimit("tokens", 40000, 39000, 1.5),
        )


async def test_a_discarded_turn_clears_its_audio_so_it_does_not_open_the_next_one() -> None:
    """rxkit's turn detector drops a turn with too little speech (a cough): the server's input buffer is
    cleared, so the next commit holds only the next turn's audio."""
    cough, question = silence(200), silence(600)  # what the audio is does not matter to the server
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Ok."))
        s = session(server, server_vad=False)
        items = [
            SpeechStarted(0.0), *cough, SpeechStopped(0.2, 0.2, "silence", True),
            SpeechStarted(1.0), *question, SpeechStopped(1.6, 0.6, "silence"),
        ]  # fmt: skip
        await collect(items, duplex(s))
        kinds = [e["type"] for e in server.received]
        assert kinds.count("input_audio_buffer.clear") == 1 and kinds.count("input_audio_buffer.commit") == 1
        clear, commit = kinds.index("input_audio_buffer.clear"), kinds.index("input_audio_buffer.commit")
        appended = [
            len(base64.b64decode(e["audio"]))
            for e in server.received[clear:commit]
            if e["type"] == "input_audio_buffer.append"
        ]
        assert sum(appended) == 600 * 24000 * 2 // 1000  # the question alone, at the API's 24 kHz
        assert not server.errors


async def test_words_said_before_the_store_is_loaded_are_said_once() -> None:
    """A text that reaches the session before run() has loaded the stored conversation is sent as the
    user's message after the seed, not also seeded as history (the model would read it twice)."""
    from rxkit.types import Message

    store = MemoryStore()
    await store.append_turn("talk", [Message.user("hi"), Message.assistant("Hello.")])
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="You're welcome."))
        s = session(server, store=store, session_id="talk")
        await collect([Transcript("thanks")], duplex(s))  # arrives as the graph subscribes: before run() loads
        items = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
        texts = [(i["role"], i["content"][0].get("text")) for i in items]
        assert texts == [("user", "hi"), ("assistant", "Hello."), ("user", "thanks")]
        assert [m.text for m in s.history] == ["hi", "Hello.", "thanks", "You're welcome."]
        assert not server.errors
    assert [m.text for m in await store.load("talk")] == ["hi", "Hello.", "thanks", "You're welcome."]
