"""Push reading (rxkit.providers._push): a streamed body is parsed inside aiohttp's data_received.

The same recorded streams, cut anywhere, give the same elements whether the
body is pushed (the default) or pulled with ``readany`` (the fallback for a
reader that cannot be switched); elements really arrive from the protocol
callback, not from a woken task; compressed bodies still work; the
connection goes back to the pool; a subscriber that leaves in the middle of
a network chunk stops the call cleanly.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import MalformedEventError, ProviderError, StreamInterruptedError
from rxkit.providers import _exchange, _push
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, recording, sse_body

REQUEST = ChatRequest(messages=[Message.user("What is the capital of France?")])


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


@pytest.fixture(params=["push", "pull"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "pull":
        monkeypatch.setattr(_exchange, "can_push", lambda content: False)
    yield request.param


def make(url: str, bus: EventBus) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-mini", base_url=url, api_key=API_KEY, compatible=False, bus=bus)


def summary(elements: list[Any]) -> tuple[str, list[tuple[str, str, str]], str | None]:
    text = "".join(e.text for e in elements if isinstance(e, TextDelta))
    calls = [(e.call.id, e.call.name, e.call.arguments) for e in elements if isinstance(e, ToolCallElement)]
    end = elements[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    return text, calls, end.response.finish_reason


@pytest.mark.parametrize("name", ["text", "tools", "keepalive_crlf", "llama_tool", "vllm_text"])
async def test_push_and_pull_give_the_same_answer_however_the_bytes_are_cut(
    server: OpenAIServer, bus: EventBus, path: str, name: str
) -> None:
    results = []
    provider = make(server.url, bus)
    async with ano_leaks():
        for size in (None, 1, 7, 1460):
            server.push(Reply(stream=recording(name), chunk_size=size))
            results.append(summary(await provider.stream(REQUEST).pipe(ops.to_list())))
        await provider.aclose()
    assert all(r == results[0] for r in results), results
    text, calls, finish = results[0]
    assert finish in ("stop", "tool_calls")
    assert text or calls


async def test_elements_are_emitted_from_the_protocol_callback_not_a_woken_task(
    server: OpenAIServer, bus: EventBus, path: str
) -> None:
    """Pushed: no task runs when a token reaches the subscriber. Pulled: the call's task does."""
    server.push(Reply(stream=recording("text"), event_delay=0.002))
    provider = make(server.url, bus)
    tasks: list[asyncio.Task[Any] | None] = []
    done = asyncio.get_running_loop().create_future()

    def on_next(element: Any) -> None:
        if isinstance(element, TextDelta):
            tasks.append(asyncio.current_task())

    provider.stream(REQUEST).subscribe(on_next, done.set_exception, lambda: done.set_result(None))
    await done
    await provider.aclose()
    assert len(tasks) > 3
    if path == "push":
        assert tasks == [None] * len(tasks)
    else:
        assert all(t is not None for t in tasks)


async def test_a_gzip_compressed_stream_is_pushed_through_the_decompressor(bus: EventBus) -> None:
    body = gzip.compress(sse_body([chunk({"content": "Par"}), chunk({"content": "is"}), chunk({}, "stop")]))

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})
        await response.prepare(request)
        for i in range(0, len(body), 9):  # the decompressor gets the stream in odd pieces
            await response.write(body[i : i + 9])
        await response.write_eof()
        return response

    url, runner = await _serve(handle)
    provider = make(url, bus)
    try:
        out = await provider.stream(REQUEST).pipe(ops.to_list())
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert summary(out) == ("Paris", [], "stop")


async def test_the_connection_goes_back_to_the_pool_after_done(bus: EventBus, path: str) -> None:
    peers: list[Any] = []
    raw = sse_body([chunk({"content": "ok"}), chunk({}, "stop")])

    async def handle(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(raw)  # [DONE] and the chunked terminator arrive apart
        await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    url, runner = await _serve(handle)
    provider = make(url, bus)
    try:
        for _ in range(3):
            out = await provider.stream(REQUEST).pipe(ops.to_list())
            assert summary(out)[0] == "ok"
            await asyncio.sleep(0.05)  # subscribers have the answer before the terminator is drained
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert len(peers) == 3 and len(set(peers)) == 1  # one keep-alive connection for the three calls


async def test_leaving_in_the_middle_of_a_network_chunk_stops_cleanly(
    server: OpenAIServer, bus: EventBus, path: str
) -> None:
    """take(2) disposes inside on_next while the rest of the chunk's events are still being parsed;
    a malformed event later in the same chunk must not fail an already cancelled call."""
    chunks: list[dict[str, Any] | str] = [chunk({"content": w}) for w in ("a", "b", "c", "d")]
    raw = sse_body([*chunks, "{not json", chunk({}, "stop")])
    server.push(Reply(stream=raw, chunk_size=len(raw)))  # one write: every event in one data_received
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    provider = make(server.url, bus)
    try:
        async with ano_leaks():
            out = await provider.stream(REQUEST).pipe(ops.take(2), ops.to_list())
            await asyncio.sleep(0.05)
            await provider.aclose()
    finally:
        loop.set_exception_handler(None)
    assert [e.text for e in out] == ["a", "b"]
    assert problems == []
    assert _push._sinks == {}


async def test_malformed_event_and_cut_stream_are_typed_errors_on_both_paths(
    server: OpenAIServer, bus: EventBus, path: str
) -> None:
    provider = make(server.url, bus)
    server.push(Reply(stream=recording("malformed"), chunk_size=5))
    with pytest.raises(MalformedEventError):
        await provider.stream(REQUEST).pipe(ops.to_list())
    server.push(Reply(stream=recording("text"), cut_after=3))
    with pytest.raises(StreamInterruptedError) as info:
        await provider.stream(REQUEST).pipe(ops.to_list())
    assert info.value.partial
    await provider.aclose()
    assert _push._sinks == {}


async def test_only_a_plain_healthy_reader_is_switched() -> None:
    class Other(aiohttp.StreamReader):
        __slots__ = ()

    loop = asyncio.get_running_loop()
    protocol: Any = _NullProtocol()
    assert _push.can_push(aiohttp.StreamReader(protocol, 2**16, loop=loop))
    assert not _push.can_push(Other(protocol, 2**16, loop=loop))
    failed = aiohttp.StreamReader(protocol, 2**16, loop=loop)
    failed.set_exception(aiohttp.ClientPayloadError("cut"))
    assert not _push.can_push(failed)
    assert not _push.can_push(object())


async def test_buffered_data_and_eof_before_the_switch_are_not_lost() -> None:
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(_NullProtocol(), 2**16, loop=loop)  # type: ignore[arg-type]
    reader.feed_data(b"data: 1\n\n")
    reader.feed_eof()
    got: list[Any] = []
    finished: asyncio.Future[str] = loop.create_future()

    class Sink:
        def feed(self, data: bytes) -> None:
            got.append(data)

        def eof(self) -> None:
            finished.set_result("eof")

        def error(self, exc: BaseException) -> None:
            finished.set_exception(exc)

    _push.push_on(reader, Sink())
    try:
        assert type(reader) is _push.PushReader
        assert await finished == "eof"
    finally:
        _push.push_off(reader)
    assert got == [b"data: 1\n\n"]
    assert type(reader) is aiohttp.StreamReader  # switched back
    assert _push._sinks == {}


class _NullProtocol:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


async def _serve(handler: Any) -> tuple[str, web.AppRunner]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/v1", runner


async def test_a_failure_inside_the_callback_goes_to_the_call_not_to_aiohttp(
    server: OpenAIServer, bus: EventBus, path: str
) -> None:
    """Whatever raises while a chunk is handled (here a debug hook) fails the call with that error."""

    def debug(line: str) -> None:
        if "<- event" in line:
            raise RuntimeError("debug hook broke")

    provider = OpenAIProvider(
        "gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=bus, debug=debug
    )
    server.push(Reply(stream=recording("text")))
    async with ano_leaks():
        with pytest.raises(ProviderError, match="debug hook broke"):
            await provider.stream(REQUEST).pipe(ops.to_list())
        await provider.aclose()
    assert _push._sinks == {}


async def test_an_event_over_the_size_limit_is_a_typed_error(
    server: OpenAIServer, bus: EventBus, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _exchange.SSEDecoder

    class Small(real):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(max_event_bytes=2048)

    monkeypatch.setattr(_exchange, "SSEDecoder", Small)
    provider = make(server.url, bus)
    server.push(Reply(stream=sse_body([chunk({"content": "x" * 5000}), chunk({}, "stop")]), chunk_size=1000))
    with pytest.raises(MalformedEventError, match="larger than 2048 bytes") as info:
        await provider.stream(REQUEST).pipe(ops.to_list())
    assert str(info.value).startswith("openai: ")  # named once, by the call
    await provider.aclose()


async def test_data_a_resumed_parser_feeds_while_the_buffer_is_drained_is_not_lost() -> None:
    """Draining the buffer resumes a paused protocol, which may feed the reader again at once."""
    loop = asyncio.get_running_loop()

    refills = [b"data: 2\n\n", b"data: 3\n\n"]

    class Refilling(_NullProtocol):
        def resume_reading(self, resume_parser: bool = True) -> None:
            if refills:
                reader.feed_data(refills.pop(0))

    reader = aiohttp.StreamReader(Refilling(), 2**16, loop=loop)  # type: ignore[arg-type]
    reader.feed_data(b"data: 1\n\n")
    got: list[bytes] = []

    class Sink:
        def feed(self, data: bytes) -> None:
            got.append(data)

        def eof(self) -> None:
            pass

        def error(self, exc: BaseException) -> None:
            pass

    _push.push_on(reader, Sink())
    try:
        reader.feed_data(b"data: 4\n\n")  # pushed from now on
    finally:
        _push.push_off(reader)
    assert b"".join(got) == b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
