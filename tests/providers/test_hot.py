"""Hot stream semantics: one request shared by all, late subscribers caught up, abort on last leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex import Observer
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.providers._hot import HotStream, StreamAccumulator
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus, ProviderCallFailed
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message, ToolCall
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, recording, sse_body

REQUEST = ChatRequest(messages=[Message.user("Tell me about Paris.")])
TEXT = "The capital of France is Paris — 🇫🇷.\n\nIt is also its largest city."


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


def make(server: OpenAIServer, bus: EventBus, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=bus, **kw)


class Sink:
    """Collects what one subscriber sees."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.error: Exception | None = None
        self.done = asyncio.Event()

    def observer(self) -> Observer[Any]:
        return Observer(self.items.append, self._error, self.done.set)

    def _error(self, e: Exception) -> None:
        self.error = e
        self.done.set()

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.items if isinstance(e, TextDelta))


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_one_request_shared_by_all_subscribers(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text")))
    provider = make(server, bus)
    async with ano_leaks():
        stream = provider.stream(REQUEST)
        a, b = Sink(), Sink()
        stream.subscribe(a.observer())
        stream.subscribe(b.observer())
        await asyncio.wait_for(asyncio.gather(a.done.wait(), b.done.wait()), 5)
        await provider.aclose()
    assert len(server.requests) == 1
    assert a.items == b.items and a.text == TEXT
    assert isinstance(a.items[-1], EndOfTurn)


async def test_late_subscriber_gets_accumulated_text_first(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text"), event_delay=0.02))
    provider = make(server, bus)
    try:
        stream = provider.stream(REQUEST)
        early, late = Sink(), Sink()
        stream.subscribe(early.observer())
        await wait_for(lambda: len(early.items) >= 4)
        stream.subscribe(late.observer())
        joined_at = len(early.items)
        await asyncio.wait_for(asyncio.gather(early.done.wait(), late.done.wait()), 5)
    finally:
        await provider.aclose()
    assert len(server.requests) == 1
    first = late.items[0]
    assert isinstance(first, TextDelta)
    assert first.text == "".join(e.text for e in early.items[:joined_at])  # one delta of everything so far
    assert late.items[1:] == early.items[joined_at:]  # then the same live elements
    assert late.text == early.text == TEXT


async def test_subscriber_after_completion_gets_the_whole_answer(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("keepalive_crlf")))
    provider = make(server, bus)
    try:
        stream = provider.stream(REQUEST)
        first = await stream.pipe(ops.to_list())
        again = await stream.pipe(ops.to_list())
    finally:
        await provider.aclose()
    assert len(server.requests) == 1
    assert [type(e) for e in again] == [TextDelta, ToolCallElement, EndOfTurn]
    assert again[0].text == "Let me check."
    assert again[1:] == first[2:]


async def test_disposing_the_last_subscriber_aborts_the_request(server: OpenAIServer, bus: EventBus) -> None:
    stream_bytes = sse_body([chunk({"content": "Hel"}), chunk({"content": "lo"})])[: -len(b"data: [DONE]\n\n")]
    server.push(Reply(stream=stream_bytes, hang=True))
    provider = make(server, bus)
    async with ano_leaks():
        sink = Sink()
        sub = provider.stream(REQUEST).subscribe(sink.observer())
        await wait_for(lambda: sink.text == "Hello")
        assert server.disconnects == 0
        sub.dispose()
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the server handler saw the client leave
        await provider.aclose()
    assert server.disconnects == 1 and server.completed == 0
    assert not sink.done.is_set()  # a disposed subscriber hears nothing more
    bus.flush()
    assert [e.error_type for e in bus.events(ProviderCallFailed)] == ["Cancelled"]


async def test_one_of_two_leaving_does_not_abort(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text"), event_delay=0.01))
    provider = make(server, bus)
    try:
        stream = provider.stream(REQUEST)
        a, b = Sink(), Sink()
        sub_a = stream.subscribe(a.observer())
        stream.subscribe(b.observer())
        await wait_for(lambda: len(a.items) >= 2)
        sub_a.dispose()
        await asyncio.wait_for(b.done.wait(), 5)
        await wait_for(lambda: server.completed == 1)
    finally:
        await provider.aclose()
    assert b.text == TEXT and b.error is None
    assert server.disconnects == 0


async def test_resubscribing_after_abort_starts_a_new_call(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=b"", hang=True), Reply(stream=recording("text")))
    provider = make(server, bus)
    try:
        stream = provider.stream(REQUEST)
        sub = stream.subscribe(Sink().observer())
        await wait_for(lambda: server.active == 1)
        sub.dispose()
        await asyncio.wait_for(server.disconnected.wait(), 5)
        out = await stream.pipe(ops.to_list())
    finally:
        await provider.aclose()
    assert len(server.requests) == 2
    assert out[-1].response.text == TEXT


async def test_take_disposes_mid_stream_and_frees_everything(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text"), event_delay=0.02))
    provider = make(server, bus)
    async with ano_leaks():
        out = await provider.stream(REQUEST).pipe(ops.take(3), ops.to_list())
        await asyncio.wait_for(server.disconnected.wait(), 5)
        await provider.aclose()
    assert [e.text for e in out] == ["The", " capital", " of"]


async def test_a_raising_subscriber_does_not_break_the_others(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text")))
    provider = make(server, bus)
    try:
        stream = provider.stream(REQUEST)
        bad_errors: list[Exception] = []

        def explode(_: Any) -> None:
            raise RuntimeError("subscriber bug")

        stream.subscribe(Observer(explode, bad_errors.append))
        good = Sink()
        stream.subscribe(good.observer())
        await asyncio.wait_for(good.done.wait(), 5)
    finally:
        await provider.aclose()
    assert good.text == TEXT and good.error is None
    assert [str(e) for e in bad_errors] == ["subscriber bug"]


async def test_concurrency_limit_per_provider(server: OpenAIServer, bus: EventBus) -> None:
    for _ in range(4):
        server.push(Reply(stream=recording("text"), event_delay=0.005))
    provider = make(server, bus, max_concurrency=2)
    async with ano_leaks():
        outs = await asyncio.gather(*(provider.stream(REQUEST).pipe(ops.to_list()) for _ in range(4)))
        await provider.aclose()
    assert all(out[-1].response.text == TEXT for out in outs)
    assert server.max_active == 2 and len(server.requests) == 4


async def test_pooled_connection_is_reused_and_closed_by_aclose(server: OpenAIServer, bus: EventBus) -> None:
    provider = make(server, bus)
    async with ano_leaks():
        for _ in range(3):
            await provider.chat(REQUEST)
        session = provider.client.session()
        assert session is not None and session.connector is not None
        assert len(server.requests) == 3
        peers = {r.peer for r in server.requests}
        assert len(peers) == 1 and None not in peers, f"three calls, one TCP connection: {peers}"
        await provider.aclose()
        assert session.closed and provider.client.closed


# -- the accumulator and hot stream on their own -----------------------------


def test_replay_keeps_order_of_text_and_tool_calls() -> None:
    acc = StreamAccumulator("p")
    acc.text("a")
    acc.text("b")
    acc.tool(0, "id0", "f", '{"x":')
    acc.tool(0, "id0", "f", "1}")  # id and name repeated (llama.cpp): taken once
    acc.tool_done(0)
    acc.text("c")
    seen: list[Any] = []
    acc.replay_to(Observer(seen.append))
    assert seen == [TextDelta("ab"), ToolCallElement(ToolCall(id="id0", name="f", arguments='{"x":1}')), TextDelta("c")]


def test_tool_calls_left_open_are_emitted_in_start_order_at_the_end() -> None:
    acc = StreamAccumulator("p")
    seen: list[Any] = []
    acc.observers = [Observer(seen.append)]
    acc.tool(1, "b", "g", "{}")
    acc.tool(0, None, "f")
    acc.finish(None)
    calls = [e.call for e in seen if isinstance(e, ToolCallElement)]
    assert [c.name for c in calls] == ["g", "f"]
    assert calls[1].arguments == "{}" and calls[1].id.startswith("call_")  # made-up id, empty args
    assert isinstance(seen[-1], EndOfTurn)


async def test_hot_stream_error_reaches_late_subscribers() -> None:
    async def failing(acc: StreamAccumulator) -> None:
        acc.text("x")
        raise ValueError("boom")

    hot = HotStream(failing, "p")
    with pytest.raises(ValueError, match="boom"):
        await hot.pipe(ops.to_list())
    seen: list[Any] = []
    errors: list[Exception] = []
    hot.subscribe(seen.append, errors.append)
    assert seen == [TextDelta("x")] and [str(e) for e in errors] == ["boom"]
