"""Pins down rxkit.duplex.session, the duplex session's reply bookkeeping and connection (issues 15, 18).

The bookkeeping (what a protocol's ``handle`` calls: ``reply_started``,
``audio_received``, ``reply_done``, ``server_error``; and the graph's
``send_text``, ``commit``, ``played``, ...) is driven directly on a real
protocol (OpenAI Realtime); the connection (``run``: setup, reading,
closing, reconnecting) runs against the loopback Realtime server
(:mod:`rxkit.duplex.loopback`) and a bare aiohttp.web WebSocket peer that
sends what a test scripts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from rxkit.duplex import AudioPrices, DuplexSession, GeminiLive, OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply
from rxkit.duplex.session import WITHDRAWN
from rxkit.elements import EndOfTurn, ErrorElement, ImageFrame, MessageElement, ToolCallElement
from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    MalformedEventError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
)
from rxkit.providers.client import HttpClient, HTTPOptions
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import CostUnknown, EventBus, VoiceTurnLatency, default_bus
from rxkit.tools import ToolRegistry, tool
from rxkit.types import CostInfo, Message, ToolCall, Usage

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-000000000000"
PRICES = AudioPrices(text_input=1.0, audio_input=10.0, text_output=2.0, audio_output=20.0)


def session(**kw: Any) -> tuple[OpenAIRealtime, list[Any]]:
    kw.setdefault("bus", EventBus())
    kw.setdefault("api_key", KEY)
    s = OpenAIRealtime(**kw)
    out: list[Any] = []
    s.emit = out.append
    return s, out


def gated(result: str) -> tuple[Any, asyncio.Event]:
    """A tool named ``slow`` that returns ``result`` once its gate is set, and the gate."""
    gate = asyncio.Event()

    @tool
    async def slow() -> str:
        """Slow."""
        await gate.wait()
        return result

    return slow, gate


def sent(s: DuplexSession) -> list[Any]:
    return [orjson.loads(x) for x in s.outbox.items if isinstance(x, str)]


def ends(out: list[Any]) -> list[Any]:
    return [x.response for x in out if isinstance(x, EndOfTurn)]


async def until(check: Callable[[], bool], what: str = "") -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- construction ---


def test_bad_bounds_are_config_errors_naming_the_session() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAIRealtime(api_key=KEY, max_queued=7)
    assert str(info.value) == "openai-realtime: max_queued must be at least 8, not 7"
    assert OpenAIRealtime(api_key=KEY, max_queued=8).outbox.max_queued == 8
    with pytest.raises(ConfigError) as info:
        OpenAIRealtime(api_key=KEY, reconnects=-1)
    assert str(info.value) == "openai-realtime: reconnects must be zero or more, not -1"
    assert OpenAIRealtime(api_key=KEY, reconnects=0).reconnects == 0


def test_the_defaults() -> None:
    s = OpenAIRealtime(api_key=KEY)
    assert (s.instructions, s.voice, s.server_vad, s.tool_timeout, s.approver) == ("", None, True, 30.0, None)
    assert (s.history, s.store, s.session_id, s.reconnects, s.max_queued) == ([], None, "duplex", 2, 500)
    assert s.outbox.max_queued == 500 and s.outbox.dropped_audio == 0 and s.dropped_audio == 0
    assert (s.finish_grace_s, s.bus, s.connections) == (0.7, default_bus, 0)
    assert s.usage == Usage() and s.cost == CostInfo() and isinstance(s.client, HttpClient)
    assert (s.reply_active, s.reply_items, s.reply_text, s.reply_calls) == (False, [], [], [])
    assert (s.user_speaking, s.awaiting_reply, s.idle, s.speaking) == (False, False, True, False)
    assert isinstance(s.registry, ToolRegistry) and len(s.registry) == 0
    assert s.emit(object()) is None  # emits nothing before run()
    assert DuplexSession.price_source is None and DuplexSession.free is False
    assert (DuplexSession.name, DuplexSession.input_rate, DuplexSession.output_rate) == ("duplex", 24000, 24000)
    assert OpenAIRealtime(base_url="wss://h/vX/", api_key=KEY).base_url == "wss://h/vX"  # slashes only
    assert repr(OpenAIRealtime(base_url="https://h/v1//", api_key=KEY)) == (
        "OpenAIRealtime('gpt-realtime', base_url='wss://h/v1')"
    )


def test_the_arguments_are_kept() -> None:
    @tool
    def f() -> str:
        """F."""
        return "x"

    history = [Message.user("hi")]
    registry = ToolRegistry([f])
    client = HttpClient(HTTPOptions())
    s = OpenAIRealtime(
        api_key=KEY,
        instructions="I",
        voice="v",
        server_vad=False,
        tools=registry,
        tool_timeout=3.0,
        history=history,
        session_id="abc",
        reconnects=5,
        max_queued=9,
        finish_grace_s=0.2,
        client=client,
    )
    assert (s.instructions, s.voice, s.server_vad, s.tool_timeout, s.session_id) == ("I", "v", False, 3.0, "abc")
    assert (s.reconnects, s.max_queued, s.finish_grace_s, s.client) == (5, 9, 0.2, client)
    assert s.registry is registry and s.approver is None
    store = MemoryStore()
    assert OpenAIRealtime(api_key=KEY, store=store).store is store
    assert s.history == history and s.history is not history  # a copy: the caller's list is left alone
    assert len(OpenAIRealtime(api_key=KEY, tools=[f]).registry) == 1


def test_prices_looked_up_given_free_or_unknown() -> None:
    bus = EventBus()
    assert OpenAIRealtime(api_key=KEY, bus=bus).prices is not None  # gpt-realtime is in genai-prices
    unknown = OpenAIRealtime("my-own-realtime", api_key=KEY, bus=bus)
    assert unknown.prices is None

    class Bare(OpenAIRealtime):
        price_source = None

    class Free(Bare):
        free = True

    assert Bare(api_key=KEY, bus=bus).prices is None
    assert Free(api_key=KEY, bus=bus).prices == AudioPrices()
    assert Free(api_key=KEY, bus=bus, prices=PRICES).prices == PRICES
    assert OpenAIRealtime("my-own-realtime", api_key=KEY, bus=bus, prices=PRICES).prices == PRICES
    bus.flush()
    assert [(e.provider, e.model, e.reason) for e in bus.history if isinstance(e, CostUnknown)] == [
        ("openai-realtime", "my-own-realtime", "not in genai-prices (openai)"),
        ("openai-realtime", "gpt-realtime", "no prices= given"),
    ]


async def test_with_no_prices_a_reply_has_no_cost_and_with_prices_the_costs_add_up() -> None:
    s, out = session(model="my-own-realtime")
    s.reply_started()
    s.book_cost(10, 10, 10, 10)
    s.reply_done(None)
    assert ends(out)[0].cost is None and s.cost == CostInfo()
    p, out = session(prices=PRICES)
    p.reply_started()
    p.book_cost(1000, 0, 0, 0)
    p.reply_done(Usage(input_tokens=1000))
    p.reply_started()
    p.reply_done(None)  # no cost booked for this one: $0, not the last one's
    p.reply_started()
    p.book_cost(0, 0, 1000, 0)
    p.reply_done(Usage(output_tokens=1000))
    costs = [r.cost for r in ends(out)]
    assert [c.total for c in costs] == pytest.approx([0.001, 0.0, 0.002])
    assert p.cost.total == pytest.approx(0.003) and p.usage == Usage(input_tokens=1000, output_tokens=1000)
    assert [r.usage for r in ends(out)][1] == Usage()


# --- the input side ---


async def test_a_text_asks_for_a_reply_at_once_only_when_idle() -> None:
    s, _ = session()
    s.send_text("one")
    assert sent(s) == s.text_messages("one") and s.awaiting_reply and s.history == [Message.user("one")]
    s.send_text("two")  # a reply is awaited: asked when it ends
    assert len(sent(s)) == 2 and s.history[-1] == Message.user("two")
    s.reply_started()
    assert s.awaiting_reply is False and s.reply_active is True
    s.send_text("three")
    assert len(sent(s)) == 2
    s.reply_done(None)
    assert sent(s)[2:] == s.text_messages("two") and s.awaiting_reply
    s.reply_started()
    s.reply_done(None)
    assert sent(s)[4:] == s.text_messages("three")
    s.reply_started()
    s.reply_done(None)
    assert len(sent(s)) == 6 and not s.awaiting_reply and s.idle


async def test_at_most_64_texts_wait_for_their_turn() -> None:
    s, _ = session()
    s.reply_started()
    for k in range(66):
        s.send_text(str(k))
    asked = []
    for _ in range(70):
        s.reply_done(None)
        asked += [e["item"]["content"][0]["text"] for e in sent(s) if e["type"] == "conversation.item.create"]
        s.outbox.items.clear()
        s.reply_started()
    assert asked == [str(k) for k in range(2, 66)]


async def test_a_text_while_tools_run_waits_for_them() -> None:
    slow, gate = gated("done")
    s, out = session(tools=[slow])
    s.reply_started()
    s.tool_call(ToolCall(id="c1", name="slow", arguments="{}"))
    s.reply_done(None)
    assert not s.idle
    s.send_text("meanwhile")
    await asyncio.sleep(0.01)
    assert sent(s) == []
    gate.set()
    await until(lambda: len(sent(s)) >= 2, "the tool result")
    assert [e["type"] for e in sent(s)] == ["conversation.item.create", "response.create"]
    assert sent(s)[0]["item"] == {"type": "function_call_output", "call_id": "c1", "output": "done"}
    assert s.awaiting_reply and s.idle is False
    s.reply_started()
    s.reply_done(None)
    assert sent(s)[-2:] == s.text_messages("meanwhile")
    assert [type(x) for x in out] == [ToolCallElement, EndOfTurn, MessageElement, EndOfTurn]
    assert out[2].message == Message.tool("c1", "done", name="slow") and s.history[-2] == out[2].message


async def test_a_failing_tool_run_goes_out_in_band_and_the_next_text_is_asked() -> None:
    @tool
    def f() -> str:
        """F."""
        return "x"

    s, out = session(tools=[f])
    s.reply_started()
    s.reply_calls.append(ToolCall(id="c1", name="f", arguments="{}"))

    def broken(results: list[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
        raise ProviderError("cannot build the results")

    s.tool_result_messages = broken  # type: ignore[method-assign]
    s.reply_done(None)
    s.send_text("next")
    await until(lambda: any(isinstance(x, ErrorElement) for x in out), "the error")
    (error,) = [x for x in out if isinstance(x, ErrorElement)]
    assert str(error.error) == "cannot build the results" and error.stage == "openai-realtime"
    assert sent(s) == s.text_messages("next")


async def test_an_interrupt_cancels_the_tools_and_the_reply_in_flight() -> None:
    slow, _ = gated("done")
    s, out = session(tools=[slow])
    s.interrupt()  # nothing in flight: nothing to cancel
    assert sent(s) == []
    s.reply_started()
    s.interrupt()
    assert sent(s) == [{"type": "response.cancel"}]
    s.tool_call(ToolCall(id="c1", name="slow", arguments="{}"))
    s.reply_done(None)
    await asyncio.sleep(0.01)
    s.interrupt()
    await until(lambda: s.idle, "the tools cancelled")
    assert len(sent(s)) == 1 and not [x for x in out if isinstance(x, ErrorElement)]


def test_commit_discard_image_and_audio_are_queued() -> None:
    s, _ = session()
    s.send_audio(b"\x00\x01")
    s.send_image(ImageFrame(b"png", "image/png"))
    s.commit()
    s.discard()
    assert s.outbox.items[0] == b"\x00\x01"
    assert sent(s) == [
        *s.image_messages(ImageFrame(b"png", "image/png")),
        *s.commit_messages(),
        *s.discard_messages(),
    ]
    assert s.awaiting_reply
    g = GeminiLive(api_key="k", bus=EventBus())
    g.discard()  # Gemini has no such message
    assert list(g.outbox.items) == []


def test_a_full_queue_drops_audio_and_counts_it() -> None:
    s, _ = session(max_queued=8)
    for _ in range(10):
        s.send_audio(b"\x00\x00")
    assert s.dropped_audio == 2 and len(s.outbox.items) == 8
    s.send([{"type": "response.create"}])
    assert len(s.outbox.items) == 9


# --- the reply's bookkeeping ---


async def test_audio_is_booked_per_item_and_the_first_after_a_commit_is_timed() -> None:
    bus = EventBus()
    s, _ = session(bus=bus)
    s.audio_received("x", 4800)  # no turn ended yet: not timed
    s.commit()
    s.reply_started()
    assert s.reply_items == []
    time.sleep(0.02)
    s.audio_received("a", 4800)
    s.audio_received("a", 4801)
    s.audio_received("b", 47)
    s.audio_received("a", 48)
    assert s.reply_items == [["a", 200], ["b", 0], ["a", 1]]
    bus.flush()
    (latency,) = [e for e in bus.history if isinstance(e, VoiceTurnLatency)]
    assert latency.turn == 0 and 0.02 <= latency.total_s < 5 and latency.model_ttft_s == latency.total_s
    s.reply_done(None)
    s.reply_started()
    s.audio_received("c", 4800)  # no turn ended before it: not timed
    s.user_speech_ended()
    s.reply_done(None)
    s.reply_started()
    s.audio_received("d", 4800)
    bus.flush()
    assert [e.turn for e in bus.history if isinstance(e, VoiceTurnLatency)] == [0, 1]


async def test_speaking_lasts_while_the_replys_audio_may_still_play() -> None:
    s, _ = session()
    s.reply_started()
    assert s.speaking
    s.audio_received("a", 48000 * 2)  # 2 s of audio: plays until about 2 s from now
    s.reply_done(None)
    assert s.speaking and s.reply_items
    t, _ = session()
    t.reply_started()
    t.audio_received("a", 48)  # 1 ms: played by now, but within the 0.5 s grace
    t.reply_done(None)
    assert t.speaking
    await asyncio.sleep(0.6)
    assert not t.speaking
    u, _ = session()
    u.reply_started()
    u.reply_done(None)
    assert not u.speaking  # nothing to play


def test_the_servers_vad_ends_a_turn_and_awaits_the_reply_rxkits_does_not() -> None:
    s, _ = session()
    s.user_speech_started()
    assert s.user_speaking and not s.idle
    s.user_speech_ended()
    assert not s.user_speaking and s.awaiting_reply and not s.idle
    t, _ = session(server_vad=False)
    t.user_speech_started()
    t.user_speech_ended()
    assert not t.awaiting_reply and t.idle
    t.user_transcript("hello")
    assert t.history == [Message.user("hello")]


async def test_a_reply_started_twice_is_one_reply() -> None:
    s, _ = session()
    s.reply_started()
    s.reply_text.append("Hel")
    s.audio_received("a", 4800)
    s.reply_started()  # a late delta of the same reply
    assert s.reply_text == ["Hel"] and s.reply_items == [["a", 100]]
    s.reply_done(None)
    s.reply_started()
    assert s.reply_text == [] and s.reply_items == [] and s.reply_calls == []


async def test_a_reply_done_books_history_and_runs_tools_only_when_completed() -> None:
    ran: list[str] = []

    @tool
    def f() -> str:
        """F."""
        ran.append("f")
        return "x"

    for status, run_tools, runs in [("completed", True, 1), ("cancelled", True, 0), ("completed", False, 0)]:
        ran.clear()
        s, out = session(tools=[f])
        s.reply_started()
        s.reply_text += ["One ", "two."]
        s.tool_call(ToolCall(id="c1", name="f", arguments="{}"))
        s.reply_done(Usage(input_tokens=3), status, run_tools=run_tools)
        await asyncio.sleep(0.05)
        assert len(ran) == runs, (status, run_tools)
        r = ends(out)[0]
        assert r.finish_reason == status and r.usage == Usage(input_tokens=3)
        assert r.message == Message.assistant("One two.", [ToolCall(id="c1", name="f", arguments="{}")])
        assert r.model == "gpt-realtime" and r.provider == "openai-realtime"
        assert s.history[0] == r.message and s.reply_active is False
    s, out = session()
    s.reply_done(None)
    assert ends(out)[0].message == Message.assistant("") and ends(out)[0].message.tool_calls == []


# --- truncation at what was heard ---


def truncations(s: DuplexSession) -> list[tuple[str, int]]:
    return [(e["item_id"], e["audio_end_ms"]) for e in sent(s) if e["type"] == "conversation.item.truncate"]


async def test_an_interrupted_reply_is_truncated_at_what_was_played() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)  # 100 ms
    s.audio_received("b", 9600)  # 200 ms
    s.reply_text.append("alpha beta gamma delta epsilon zeta")
    s.reply_done(None)
    s.played(0.15, interrupted=True)
    assert truncations(s) == [("b", 50)] and s.reply_items == []
    assert s.history[-1] == Message.assistant("alpha beta gamma")  # 150 of 300 ms heard: half the text


async def test_a_cut_inside_the_first_item_truncates_it_and_empties_the_later_ones() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)
    s.audio_received("b", 4800)
    s.reply_done(None)
    s.played(0.04, interrupted=True)
    assert truncations(s) == [("a", 40), ("b", 0)]


async def test_a_cut_right_at_an_items_end_leaves_that_item_whole() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)
    s.audio_received("b", 4800)
    s.reply_text.append("one two")
    s.reply_done(None)
    s.played(0.1, interrupted=True)
    assert truncations(s) == [("b", 0)] and s.history[-1] == Message.assistant("one")


async def test_played_past_the_end_cuts_nothing_of_the_text() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)
    s.reply_text.append("one two")
    s.reply_done(None)
    s.played(5.0, interrupted=True)
    assert truncations(s) == [] and s.history[-1] == Message.assistant("one two")


async def test_a_reply_still_in_flight_is_cut_when_it_ends() -> None:
    s, out = session()
    s.reply_started()
    s.audio_received("a", 9600)  # 200 ms
    s.reply_text.append("one two three four")
    s.played(0.1, interrupted=True)
    assert truncations(s) == [("a", 100)] and s.history == []
    s.reply_text.append(" five six")  # more came before its end
    s.reply_done(None, "cancelled")
    assert s.history[-1] == Message.assistant("one two three")
    assert ends(out)[-1].message.text == "one two three"
    s.reply_started()
    s.reply_text.append("next reply")
    s.reply_done(None)
    assert s.history[-1] == Message.assistant("next reply")  # the cut was for that reply only


async def test_played_to_the_end_forgets_the_items_but_not_while_a_reply_runs() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)
    s.played(0.1, interrupted=False)
    assert s.reply_items == [["a", 100]]
    s.reply_done(None)
    s.played(0.1, interrupted=False)
    assert s.reply_items == [] and truncations(s) == []
    s.played(0.1, interrupted=True)  # nothing left to cut
    assert truncations(s) == [] and s.history[-1] == Message.assistant("")


async def test_a_cut_reply_is_amended_only_if_the_history_still_ends_with_it() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 4800)
    s.reply_text.append("one two three")
    s.reply_done(None)
    s.history[-1] = Message.user("replaced")
    s.played(0.05, interrupted=True)
    assert s.history == [Message.user("replaced")]
    t, _ = session()
    t.reply_started()
    t.audio_received("a", 4800)
    t.reply_done(None)
    t.history.clear()
    t.played(0.05, interrupted=True)  # its index is past the history's end
    assert t.history == []


async def test_a_cut_reply_is_saved_to_the_store_as_heard() -> None:
    store = MemoryStore()
    s, _ = session(store=store, session_id="cut")
    s.reply_started()
    s.audio_received("a", 9600)
    s.reply_text.append("one two three four")
    s.reply_done(None)
    for _ in range(50):
        if await store.load("cut"):
            break
        await asyncio.sleep(0.01)
    assert await store.load("cut") == [Message.assistant("one two three four")]
    s.played(0.1, interrupted=True)
    for _ in range(50):
        if (await store.load("cut"))[-1].text != "one two three four":
            break
        await asyncio.sleep(0.01)
    assert await store.load("cut") == [Message.assistant("one two")]


# --- server errors ---


async def test_server_errors_are_typed_and_in_band() -> None:
    s, out = session()
    s.server_error({}, "slow down", "rate_limit_exceeded")
    s.server_error({}, "quota", "RESOURCE_EXHAUSTED")
    s.server_error({}, "too many", "429")
    s.server_error({}, "bad", "invalid_value")
    s.server_error({}, "no code")
    errors = [x.error for x in out]
    assert [type(e) for e in errors] == [RateLimitError, RateLimitError, RateLimitError, ProviderError, ProviderError]
    assert [str(e) for e in errors] == [
        "openai-realtime: server error (rate_limit_exceeded): slow down",
        "openai-realtime: server error (RESOURCE_EXHAUSTED): quota",
        "openai-realtime: server error (429): too many",
        "openai-realtime: server error (invalid_value): bad",
        "openai-realtime: server error: no code",
    ]
    assert all(e.status == 429 and e.provider == "openai-realtime" for e in errors[:3])
    assert errors[3].provider == "openai-realtime"
    assert all(x.stage == "openai-realtime" for x in out)


async def test_an_error_with_no_reply_in_flight_means_none_is_coming() -> None:
    s, _ = session()
    s.send_text("one")
    s.send_text("two")
    s.server_error({}, "refused", "x")
    assert sent(s)[2:] == s.text_messages("two") and s.awaiting_reply  # the next text is asked
    s.reply_started()
    s.server_error({}, "mid-reply", "x")
    assert s.reply_active and len(sent(s)) == 4
    s.commit()
    s.reply_done(None)
    s.server_error({}, "refused", "x")
    assert not s.awaiting_reply


def test_a_fatal_error_is_raised_not_sent() -> None:
    s, out = session()
    with pytest.raises(ProviderError) as info:
        s.server_error({"type": "error", "error": {"code": "invalid_api_key"}}, "bad key", "invalid_api_key")
    assert str(info.value) == "openai-realtime: server error (invalid_api_key): bad key" and out == []


# --- the connection, against the loopback Realtime server ---


async def test_a_session_runs_a_text_turn_and_closes_when_finished() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi there.", audio_ms=200))
        s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        s.finish()
        await asyncio.wait_for(task, 5)
        assert s.connections == 1 and server.connections == 1
        assert [r.message.text for r in ends(out)] == ["Hi there."]
        types = [e["type"] for e in server.received]
        assert types[0] == "session.update" and types.count("conversation.item.create") == 1  # said once, not seeded
        assert s.client.closed and s.emit(1) is None
        await until(lambda: server.closed_connections == 1, "the socket closed")


async def test_a_given_client_is_left_open() -> None:
    async with RealtimeServer() as server:
        client = HttpClient(HTTPOptions())
        try:
            s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0, client=client)
            s.send_text("hello")
            task = asyncio.get_running_loop().create_task(s.run(out.append))
            await until(lambda: bool(ends(out)), "the reply")
            s.finish()
            await asyncio.wait_for(task, 5)
            assert not client.closed
        finally:
            await client.aclose()


async def test_finishing_with_the_servers_vad_waits_the_grace_for_a_last_turn() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0.3)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        began = time.monotonic()
        s.finish()
        await asyncio.sleep(0.1)
        assert not task.done()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - began >= 0.25


async def test_a_turn_within_the_grace_keeps_the_session_open() -> None:
    async with RealtimeServer() as server:
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0.2)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        s.finish()
        s.user_speech_started()  # the server's VAD hears a last turn within the grace
        await asyncio.sleep(0.35)
        assert not task.done()
        s.user_speaking = False
        s.send_text("again")
        await asyncio.wait_for(task, 5)
        assert [r.message.text for r in ends(out)] == ["One.", "Two."]


async def test_rxkits_turn_detection_closes_at_once_when_finished() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        s, out = session(base_url=server.url, api_key=API_KEY, server_vad=False, finish_grace_s=5.0)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        s.finish()
        await asyncio.wait_for(task, 2)


async def test_finish_before_the_reply_ends_closes_after_it() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=300, pace_s=0.05))
        s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0)
        s.send_text("hello")
        s.finish()
        await asyncio.wait_for(s.run(out.append), 5)
        assert [r.message.text for r in ends(out)] == ["Hi."]


async def test_a_wrong_key_is_an_authentication_error_naming_the_session() -> None:
    async with RealtimeServer() as server:
        s, out = session(base_url=server.url, api_key="sk-wrong-0000000000000")
        with pytest.raises(AuthenticationError) as info:
            await s.run(out.append)
        assert info.value.provider == "openai-realtime" and s.connections == 0 and s.client.closed


class Peer:
    """A bare WebSocket server: each connection runs the next scripted coroutine ``(ws, received) -> None``."""

    def __init__(self) -> None:
        self.scripts: list[Callable[[web.WebSocketResponse, list[Any]], Awaitable[None]]] = []
        self.received: list[list[Any]] = []
        self.url = ""

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        received: list[Any] = []
        self.received.append(received)
        script = self.scripts.pop(0)
        await script(ws, received)
        return ws


@contextlib.asynccontextmanager
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    app = web.Application()
    app.router.add_get("/v1/realtime", p.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    p.url = f"ws://127.0.0.1:{port}/v1"
    try:
        yield p
    finally:
        await runner.cleanup()


async def receive_until(ws: web.WebSocketResponse, received: list[Any], kind: str) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            received.append(json.loads(msg.data))
            if received[-1].get("type") == kind:
                return


async def test_a_malformed_event_is_a_typed_error_with_the_partial_reply() -> None:
    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": "Part"}))
        await ws.send_str(json.dumps({"type": "conversation.item.input_audio_transcription.completed", "x": 1}))
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts.append(script)
        s, out = session(base_url=p.url)
        with pytest.raises(MalformedEventError) as info:
            await s.run(out.append)
        error = info.value
        assert str(error) == (
            "openai-realtime: malformed 'conversation.item.input_audio_transcription.completed' event "
            "(KeyError: 'transcript')"
        )
        assert error.provider == "openai-realtime" and error.partial == "Part"
        assert error.line == '{"type": "conversation.item.input_audio_transcription.completed", "x": 1}'


async def test_a_malformed_event_with_no_type_is_named_by_its_first_key() -> None:
    class Strict(GeminiLive):
        def handle(self, event: dict[str, Any]) -> None:
            raise ValueError("no")

    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.send_bytes(b'{"serverContent": {"x": 1}, "other": 2}')
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts.append(script)
        s = Strict(base_url=p.url.removesuffix("/v1"), api_key="k", bus=EventBus())
        s.connect_url = lambda: p.url + "/realtime"  # type: ignore[method-assign]
        with pytest.raises(MalformedEventError, match=r"malformed 'serverContent' event \(ValueError: no\)"):
            await s.run([].append)
        t = Strict(api_key="k", bus=EventBus())
        t.connect_url = lambda: p.url + "/realtime"  # type: ignore[method-assign]

        async def empty(ws: web.WebSocketResponse, received: list[Any]) -> None:
            await ws.send_str("{}")
            await receive_until(ws, received, "never")

        p.scripts.append(empty)
        with pytest.raises(MalformedEventError, match=r"malformed '\?' event"):
            await t.run([].append)


async def test_a_close_frame_with_a_policy_code_is_raised_and_not_reconnected() -> None:
    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.close(code=1008, message=b"API key expired")

    async with peer() as p:
        p.scripts += [script, script]
        s, out = session(base_url=p.url)
        with pytest.raises(AuthenticationError, match=r"closed the session \(1008\): API key expired"):
            await s.run(out.append)
        assert s.connections == 1


async def test_a_server_close_mid_reply_reconnects_and_ends_the_lost_reply_as_interrupted() -> None:
    async def first(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "response.create")
        await ws.send_str(json.dumps({"type": "response.created", "response": {}}))
        await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": "Half"}))
        await asyncio.sleep(0.05)
        await ws.close(code=1011, message=b"internal")

    async def second(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "never")  # the client closes it: finished, and nothing in flight

    async with peer() as p:
        p.scripts += [first, second]
        s, out = session(base_url=p.url, reconnects=1, finish_grace_s=0)
        s.send_text("hello")
        s.finish()
        await asyncio.wait_for(s.run(out.append), 5)
        assert s.connections == 2
        (lost,) = ends(out)
        assert lost.finish_reason == "interrupted" and lost.message.text == "Half"
        assert p.received[1][0]["type"] == "session.update"
        # the second connection is seeded with the conversation (resumed), the text not said again
        assert [e["item"]["role"] for e in p.received[1][1:]] == ["user", "assistant"]


async def test_reconnects_run_out_as_a_stream_interrupted_error_with_the_partial_reply() -> None:
    async def cut(ws: web.WebSocketResponse, received: list[Any]) -> None:
        for delta in ("So ", "far"):
            await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": delta}))
        await asyncio.sleep(0.05)
        await ws.close(code=1011)

    async with peer() as p:
        p.scripts += [cut, cut, cut]
        s, out = session(base_url=p.url, reconnects=1)
        with pytest.raises(StreamInterruptedError) as info:
            await s.run(out.append)
        assert str(info.value) == "openai-realtime: connection lost after 1 reconnects"
        assert info.value.partial == "So far" and info.value.provider == "openai-realtime"
        assert s.connections == 2


async def test_with_no_reconnects_the_first_drop_fails() -> None:
    async def cut(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.close(code=1011)

    async with peer() as p:
        p.scripts += [cut, cut]
        s, out = session(base_url=p.url, reconnects=0)
        with pytest.raises(StreamInterruptedError):
            await s.run(out.append)
        assert s.connections == 1


async def test_a_go_away_reconnects_without_using_up_a_reconnect() -> None:
    async def going(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "session.update")
        await ws.send_str(json.dumps({"goAway": {"timeLeft": "1s"}}))
        await receive_until(ws, received, "never")

    async def last(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "never")

    class Going(OpenAIRealtime):
        def handle(self, event: dict[str, Any]) -> None:
            if "goAway" in event:
                self.reconnect_soon()
            else:
                super().handle(event)

    async with peer() as p:
        p.scripts += [going, going, last]
        s = Going(base_url=p.url, api_key=KEY, bus=EventBus(), reconnects=0, finish_grace_s=0)
        task = asyncio.get_running_loop().create_task(s.run([].append))
        await until(lambda: s.connections == 3, "two reconnections")
        s.finish()
        await asyncio.wait_for(task, 5)
        assert [r[0]["type"] for r in p.received] == ["session.update"] * 3


async def test_cancelling_the_run_closes_the_socket_and_cancels_the_tools() -> None:
    slow, _ = gated("x")
    async with RealtimeServer() as server:
        server.replies.append(Reply(tool=("slow", "{}")))
        s, out = session(base_url=server.url, api_key=API_KEY, tools=[slow])
        s.send_text("go")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(s._tools), "the tool running")
        tools = list(s._tools)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: all(t.done() for t in tools), "the tools cancelled")
        assert all(t.cancelled() for t in tools) and s.client.closed
        await until(lambda: server.closed_connections == 1, "the socket closed")


async def test_the_store_is_loaded_first_and_the_conversation_saved_as_it_goes() -> None:
    store = MemoryStore()
    await store.append_turn("talk", [Message.user("before"), Message.assistant("yes")])
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        s, out = session(base_url=server.url, api_key=API_KEY, store=store, session_id="talk", finish_grace_s=0)
        s.send_text("hello")
        await asyncio.wait_for(_run_one_turn(s, out), 5)
    assert [m.text for m in await store.load("talk")] == ["before", "yes", "hello", "Hi."]
    seeded = [e for e in server.received if e["type"] == "conversation.item.create"]
    assert [e["item"]["content"][0]["text"] for e in seeded] == ["before", "yes", "hello"]


class Shared(MemoryStore):
    """Another writer appends to the session just after it is loaded."""

    async def load(self, session: str) -> list[Message]:
        loaded = await super().load(session)
        await self.append_turn(session, [Message.user("another writer")])
        return loaded


async def test_a_failing_store_goes_out_in_band() -> None:
    store = Shared()
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        s, out = session(base_url=server.url, api_key=API_KEY, store=store, session_id="talk", finish_grace_s=0)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        await until(lambda: any(isinstance(x, ErrorElement) for x in out), "the store's failure")
        s.finish()
        await asyncio.wait_for(task, 5)
        (error,) = [x for x in out if isinstance(x, ErrorElement)]
        assert error.stage == "openai-realtime" and "expected" in str(error.error)


async def _run_one_turn(s: DuplexSession, out: list[Any]) -> None:
    task = asyncio.get_running_loop().create_task(s.run(out.append))
    await until(lambda: bool(ends(out)), "the reply")
    s.finish()
    await task


# --- survivors of the first mutation run ---


async def test_texts_said_before_the_run_are_said_once_not_seeded_too() -> None:
    async with RealtimeServer() as server:
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        history = [Message.user("earlier"), Message.assistant("yes")]
        s, out = session(base_url=server.url, api_key=API_KEY, history=history, finish_grace_s=0)
        s.send_text("one")
        s.send_text("two")  # waits for the first reply
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: len(ends(out)) == 2, "both replies")
        s.finish()
        await asyncio.wait_for(task, 5)
        said = [
            e["item"]["content"][0]["text"]
            for e in server.received
            if e["type"] == "conversation.item.create" and e["item"]["role"] == "user"
        ]
        assert said == ["earlier", "one", "two"]


async def test_truncation_points_are_whole_milliseconds_of_what_played() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 28800)  # 600 ms
    s.audio_received("b", 28800)
    s.reply_done(None)
    s.played(1.0, interrupted=True)
    assert truncations(s) == [("b", 400)]


async def test_a_reply_with_no_whole_millisecond_of_audio_is_cut_by_what_played() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 40)  # under 1 ms: booked as 0
    s.reply_text.append("one two")
    s.reply_done(None)
    s.played(0.001, interrupted=True)  # 1 ms heard of "nothing": all of it
    assert s.history[-1] == Message.assistant("one two")


async def test_each_turn_the_servers_vad_ends_is_numbered() -> None:
    bus = EventBus()
    s, _ = session(bus=bus)
    for _ in range(3):
        s.user_speech_started()
        s.user_speech_ended()
        assert s.user_speaking is False
        s.reply_started()
        s.audio_received("a", 4800)
        s.reply_done(None)
    bus.flush()
    assert [e.turn for e in bus.history if isinstance(e, VoiceTurnLatency)] == [1, 2, 3]


def test_an_error_that_refused_a_request_leaves_no_reply_awaited() -> None:
    s, _ = session()
    s.commit()
    s.server_error({}, "buffer too small", "input_audio_buffer_commit_empty")
    assert s.awaiting_reply is False and s.idle


async def test_a_message_that_is_not_json_names_the_session_and_keeps_the_partial_reply() -> None:
    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        for delta in ("One ", "two"):
            await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": delta}))
        await ws.send_str("not json")
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts.append(script)
        s, out = session(base_url=p.url)
        with pytest.raises(MalformedEventError) as info:
            await s.run(out.append)
        assert str(info.value) == "openai-realtime: a server message is not JSON: 'not json'"
        assert info.value.partial == "One two"


async def test_a_malformed_event_keeps_200_characters_and_the_whole_partial_reply() -> None:
    event = {"type": "conversation.item.input_audio_transcription.completed", "pad": "x" * 300}

    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        for delta in ("One ", "two"):
            await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": delta}))
        await ws.send_str(json.dumps(event))
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts.append(script)
        s, out = session(base_url=p.url)
        with pytest.raises(MalformedEventError) as info:
            await s.run(out.append)
        assert info.value.line == json.dumps(event)[:200] and info.value.partial == "One two"


async def test_a_policy_close_with_no_reason_says_none() -> None:
    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.close(code=1008)

    async with peer() as p:
        p.scripts.append(script)
        s, out = session(base_url=p.url)
        with pytest.raises(ProviderError) as info:
            await s.run(out.append)
        assert str(info.value) == "openai-realtime: the server closed the session (1008): "


async def test_a_message_too_big_for_the_socket_is_a_dropped_connection() -> None:
    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await ws.send_str('"' + "a" * (17 * 1024 * 1024) + '"')  # past the 16 MiB the client takes
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts.append(script)
        s, out = session(base_url=p.url, reconnects=0)
        with pytest.raises(StreamInterruptedError):
            await s.run(out.append)


async def test_with_no_grace_the_session_closes_at_once_even_if_speech_starts_after() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        s, out = session(base_url=server.url, api_key=API_KEY, finish_grace_s=0)
        s.send_text("hello")
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: bool(ends(out)), "the reply")
        s.finish()
        s.user_speech_started()  # too late: the close is on its way
        await asyncio.wait_for(task, 2)


def test_finish_before_any_connection_does_nothing_yet() -> None:
    s, _ = session(server_vad=False)
    s.finish()
    assert list(s.outbox.items) == []


async def test_tools_run_with_the_sessions_timeout_and_approver() -> None:
    @tool(requires_approval=True)
    def guarded() -> str:
        """Guarded."""
        return "ran"

    @tool
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(5)
        return "late"

    @tool
    def broken() -> str:
        """Broken."""
        raise ValueError("boom")

    s, _ = session(tools=[guarded, slow, broken], tool_timeout=0.05, approver=lambda call: True)
    s.reply_started()
    for name in ("guarded", "slow", "broken"):
        s.tool_call(ToolCall(id=name, name=name, arguments="{}"))
    s.reply_done(None)
    await until(lambda: len(sent(s)) >= 4, "the tool results")
    outputs = {e["item"]["call_id"]: e["item"]["output"] for e in sent(s) if e["type"] == "conversation.item.create"}
    assert outputs["guarded"] == "ran"
    assert "timed out after 0.05 s" in outputs["slow"]
    results = {m.tool_results[0].call_id: m.tool_results[0] for m in s.history if m.role == "tool"}
    assert results["broken"].is_error is True and results["guarded"].is_error is False


async def test_a_text_waiting_on_cancelled_tools_is_asked_when_they_are_cancelled() -> None:
    slow, _ = gated("x")
    s, _ = session(tools=[slow])
    s.reply_started()
    s.tool_call(ToolCall(id="c1", name="slow", arguments="{}"))
    s.reply_done(None)
    await asyncio.sleep(0.01)
    s.send_text("stop that")
    s.interrupt()
    await until(lambda: bool(sent(s)), "the text asked")
    assert sent(s) == s.text_messages("stop that")


async def test_a_dropped_connections_writer_is_cancelled_without_a_word_to_the_loop() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    async def cut(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "session.update")
        await ws.close(code=1011)

    async def last(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "never")

    try:
        async with peer() as p:
            p.scripts += [cut, last]
            s, out = session(base_url=p.url, reconnects=1, finish_grace_s=0)
            task = loop.create_task(s.run(out.append))
            await until(lambda: s.connections == 2, "the reconnection")
            await asyncio.sleep(0.05)
            s.finish()
            await asyncio.wait_for(task, 5)
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_second_of_audio_is_1000_ms() -> None:
    s, _ = session()
    s.reply_started()
    s.audio_received("a", 48000)
    assert s.reply_items == [["a", 1000]]


async def test_a_turn_committed_while_a_reply_streams_is_timed_at_the_next_reply() -> None:
    bus = EventBus()
    s, _ = session(bus=bus)
    s.reply_started()
    s.audio_received("a", 4800)
    s.commit()  # the user's next turn, while this reply still streams
    s.audio_received("a", 4800)
    bus.flush()
    assert [e for e in bus.history if isinstance(e, VoiceTurnLatency)] == []
    s.reply_done(None)
    s.reply_started()
    s.audio_received("b", 4800)
    bus.flush()
    assert len([e for e in bus.history if isinstance(e, VoiceTurnLatency)]) == 1


async def test_a_run_that_fails_mid_connection_leaves_nothing_for_the_loop_to_report() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    async def script(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "session.update")
        await ws.send_str("[]")  # not an object: the run fails while its writer waits
        await receive_until(ws, received, "never")

    try:
        async with peer() as p:
            p.scripts.append(script)
            s, out = session(base_url=p.url)
            with pytest.raises(MalformedEventError):
                await s.run(out.append)
            await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


def test_prices_are_looked_up_under_the_sessions_own_provider() -> None:
    class Mislabelled(OpenAIRealtime):  # a Gemini model name under OpenAI's prices: none there
        pass

    assert Mislabelled("gemini-live-2.5-flash-preview", api_key=KEY, bus=EventBus()).prices is None


async def test_with_prices_a_reply_with_no_cost_booked_costs_zero_not_unknown() -> None:
    s, out = session(prices=PRICES)
    s.reply_started()
    s.reply_done(None)
    assert ends(out)[0].cost == CostInfo()


async def test_a_reply_before_any_turn_ended_is_not_timed() -> None:
    bus = EventBus()
    s, _ = session(bus=bus)
    s.reply_started()
    s.audio_received("a", 4800)
    bus.flush()
    assert [e for e in bus.history if isinstance(e, VoiceTurnLatency)] == []


class Spelled(OpenAIRealtime):
    """A protocol that writes its own audio events (not prefix + base64 + suffix)."""

    def audio_message(self, pcm: bytes) -> str:
        return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode(), "n": len(pcm)})


def test_audio_is_encoded_in_one_reused_buffer_unless_the_protocol_spells_it() -> None:
    s, _ = session()
    first = s.outbox.encode(b"ab")
    assert bytes(first) == s.audio_message(b"ab").encode() and s.outbox.encode(b"cd") is first
    t = Spelled(api_key=KEY, bus=EventBus())
    assert t.outbox.encode(b"ab") == t.audio_message(b"ab").encode()
    assert json.loads(t.outbox.encode(b"abc"))["n"] == 3


async def test_audio_goes_out_as_the_protocols_events() -> None:
    for cls in (OpenAIRealtime, Spelled):
        async with RealtimeServer() as server:
            s = cls(base_url=server.url, api_key=API_KEY, bus=EventBus(), finish_grace_s=0, server_vad=False)
            task = asyncio.get_running_loop().create_task(s.run([].append))
            s.send_audio(b"\x01\x00" * 10)
            s.send_audio(b"\x02\x00" * 12)
            await until(lambda: len([e for e in server.received if e["type"] == "input_audio_buffer.append"]) == 2)
            s.finish()
            await asyncio.wait_for(task, 5)
            appended = [e for e in server.received if e["type"] == "input_audio_buffer.append"]
            assert [base64.b64decode(e["audio"]) for e in appended] == [b"\x01\x00" * 10, b"\x02\x00" * 12]
            assert [e.get("n") for e in appended] == ([None, None] if cls is OpenAIRealtime else [20, 24])


async def test_a_history_given_is_seeded_into_the_first_connection() -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Hi.", audio_ms=100))
        history = [Message.user("earlier"), Message.assistant("yes")]
        s, out = session(base_url=server.url, api_key=API_KEY, history=history, finish_grace_s=0)
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: s.connections == 1, "connected")
        s.send_text("now")
        await until(lambda: bool(ends(out)), "the reply")
        s.finish()
        await asyncio.wait_for(task, 5)
        items = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
        assert [(i["role"], i["content"][0]["text"]) for i in items] == [
            ("user", "earlier"),
            ("assistant", "yes"),
            ("user", "now"),
        ]


async def test_a_conversation_begun_on_one_connection_is_seeded_into_the_next() -> None:
    async def first(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "response.create")
        await ws.send_str(json.dumps({"type": "response.created", "response": {}}))
        await ws.send_str(json.dumps({"type": "response.output_audio_transcript.delta", "delta": "Hi."}))
        await ws.send_str(json.dumps({"type": "response.done", "response": {"status": "completed"}}))
        await ws.close(code=1011)

    async def second(ws: web.WebSocketResponse, received: list[Any]) -> None:
        await receive_until(ws, received, "never")

    async with peer() as p:
        p.scripts += [first, second]
        s, out = session(base_url=p.url, reconnects=1, finish_grace_s=0)
        task = asyncio.get_running_loop().create_task(s.run(out.append))
        await until(lambda: s.connections == 1, "connected")
        s.send_text("hello")
        await until(lambda: s.connections == 2, "the reconnection")
        s.finish()
        await asyncio.wait_for(task, 5)
        seeded = [e["item"] for e in p.received[1] if e["type"] == "conversation.item.create"]
        assert [(i["role"], i["content"][0]["text"]) for i in seeded] == [("user", "hello"), ("assistant", "Hi.")]


async def test_a_withdrawn_tool_call_is_cancelled_kept_in_history_and_not_answered() -> None:
    gate = asyncio.Event()
    cancelled: list[int] = []

    @tool
    async def slow(n: int) -> str:
        """Slow."""
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return f"done {n}"

    s, out = session(tools=[slow])
    s.reply_started()
    calls = [ToolCall(id=f"c{n}", name="slow", arguments=f'{{"n": {n}}}') for n in (1, 2)]
    for call in calls:
        s.tool_call(call)
    s.reply_done(None)
    await asyncio.sleep(0.01)
    s.withdraw_tool_calls(["c9", "c1"])  # an id it does not run is ignored
    await until(lambda: cancelled == [1], "c1 cancelled")
    gate.set()
    await until(lambda: bool(sent(s)), "the answer for c2")
    assert sent(s) == s.tool_result_messages([(calls[1], "done 2")])  # nothing for the withdrawn call
    tools = [(m.tool_results[0].call_id, m.tool_results[0].content, m.tool_results[0].is_error) for m in s.history
             if m.role == "tool"]  # fmt: skip
    assert tools == [("c1", WITHDRAWN, True), ("c2", "done 2", False)]
    assert [x.message.tool_results[0].call_id for x in out if isinstance(x, MessageElement)] == ["c1", "c2"]
    s.withdraw_tool_calls(["c2"])  # done: nothing to cancel
    assert cancelled == [1] and not [x for x in out if isinstance(x, ErrorElement)]
    assert not s._calls_running  # a finished batch's calls are forgotten (no task kept for the session's life)


async def test_when_every_call_is_withdrawn_nothing_is_sent_and_the_next_text_is_asked() -> None:
    @tool
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(5)
        return "late"

    s, _ = session(tools=[slow])
    s.reply_started()
    s.tool_call(ToolCall(id="c1", name="slow", arguments="{}"))
    s.reply_done(None)
    await asyncio.sleep(0.01)
    s.send_text("next")  # waits for the tools
    assert sent(s) == []
    s.withdraw_tool_calls(["c1"])
    await until(lambda: s.idle or bool(sent(s)), "the tools withdrawn")
    assert sent(s) == s.text_messages("next")
    assert [m.tool_results[0].content for m in s.history if m.role == "tool"] == [WITHDRAWN]


async def test_a_tool_run_that_raises_keeps_the_other_calls_results_and_goes_out_in_band() -> None:
    @tool(requires_approval=True)
    def guarded() -> str:
        """Guarded."""
        return "ran"

    @tool
    def fine() -> str:
        """Fine."""
        return "ok"

    def approver(call: ToolCall) -> bool:
        raise RuntimeError("the approver broke")  # not a ToolError: execute_call lets it through

    s, out = session(tools=[guarded, fine], approver=approver)
    s.reply_started()
    s.tool_call(ToolCall(id="g", name="guarded", arguments="{}"))
    s.tool_call(ToolCall(id="f", name="fine", arguments="{}"))
    s.reply_done(None)
    await until(lambda: any(isinstance(x, ErrorElement) for x in out), "the error")
    (error,) = [x for x in out if isinstance(x, ErrorElement)]
    assert str(error.error) == "the approver broke"
    assert [(m.tool_results[0].call_id, m.tool_results[0].content) for m in s.history if m.role == "tool"] == [
        ("f", "ok")
    ]
    assert sent(s) == []  # the batch failed: nothing half-answered
