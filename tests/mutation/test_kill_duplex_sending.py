"""Pins down rxkit.duplex.sending: the duplex send queue and its writer, over a real loopback WebSocket (issue 18).

The peer is an aiohttp.web WebSocket server on 127.0.0.1 that records each
frame as it arrives (its type and text) and when the client closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from rxkit.duplex import GeminiLive, OpenAIRealtime
from rxkit.duplex.sending import AudioEncoder, SendQueue

pytestmark = pytest.mark.timeout(30)


class Peer:
    def __init__(self) -> None:
        self.frames: list[tuple[aiohttp.WSMsgType, str]] = []
        self.closed = asyncio.Event()
        self.arrived = asyncio.Event()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            self.frames.append((msg.type, msg.data))
            self.arrived.set()
        self.closed.set()
        return ws

    async def until(self, n: int) -> list[str]:
        while len(self.frames) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        assert all(t is aiohttp.WSMsgType.TEXT for t, _ in self.frames)
        return [d for _, d in self.frames]


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[Peer, aiohttp.ClientWebSocketResponse]]:
    peer = Peer()
    app = web.Application()
    app.router.add_get("/ws", peer.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}/ws", compress=0) as ws:
            yield peer, ws
    finally:
        await runner.cleanup()


def hex_encode(pcm: bytes) -> bytes:
    return b'{"pcm":"' + pcm.hex().encode() + b'"}'


def test_a_new_queue_is_empty_closed_and_has_dropped_nothing() -> None:
    q = SendQueue(8, hex_encode)
    assert (q.max_queued, q.encode, list(q.items), q.dropped_audio, q.opened) == (8, hex_encode, [], 0, False)
    q.open()
    assert q.opened


def test_audio_past_the_bound_is_dropped_and_counted_and_control_always_passes() -> None:
    q = SendQueue(3, hex_encode)
    for k in range(5):
        q.put_audio(bytes([k]))
    assert list(q.items) == [b"\x00", b"\x01", b"\x02"] and q.dropped_audio == 2
    q.put(["a", "b"])
    q.close_after()
    assert list(q.items) == [b"\x00", b"\x01", b"\x02", "a", "b", None]
    q.put_audio(b"x")
    assert q.dropped_audio == 3
    q.put_first(["s1", "s2"])
    assert list(q.items)[:3] == ["s1", "s2", b"\x00"]
    q.put([])
    assert len(q.items) == 8


async def test_the_writer_sends_text_and_encoded_audio_in_order_and_closes_at_the_end() -> None:
    async with connected() as (peer, ws):
        q = SendQueue(8, hex_encode)
        q.put_audio(b"\x01\x02")
        q.put(['{"type":"a"}'])
        q.put_first(['{"setup":1}', '{"setup":2}'])
        writer = asyncio.get_running_loop().create_task(q.write(ws))
        assert await peer.until(4) == ['{"setup":1}', '{"setup":2}', '{"pcm":"0102"}', '{"type":"a"}']
        q.put_audio(b"\xff")  # the writer is idle: this wakes it
        assert (await peer.until(5))[-1] == '{"pcm":"ff"}'
        q.put(['{"type":"b"}', '{"type":"c"}'])
        assert (await peer.until(7))[-2:] == ['{"type":"b"}', '{"type":"c"}']
        q.put_first(['{"again":1}'])
        assert (await peer.until(8))[-1] == '{"again":1}'
        q.put_audio(b"\x10")
        q.close_after()
        q.put(['{"after":"close"}'])  # after the close: never sent
        await asyncio.wait_for(writer, 5)
        await asyncio.wait_for(peer.closed.wait(), 5)
        assert (await peer.until(9))[-1] == '{"pcm":"10"}' and len(peer.frames) == 9
        assert ws.closed and writer.result() is None


async def test_a_close_on_an_idle_writer_wakes_it() -> None:
    async with connected() as (peer, ws):
        q = SendQueue(8, hex_encode)
        writer = asyncio.get_running_loop().create_task(q.write(ws))
        await asyncio.sleep(0.01)
        q.close_after()
        await asyncio.wait_for(writer, 5)
        assert ws.closed and peer.frames == []


async def test_an_empty_put_and_a_wake_of_a_running_writer_change_nothing() -> None:
    async with connected() as (peer, ws):
        q = SendQueue(8, hex_encode)
        writer = asyncio.get_running_loop().create_task(q.write(ws))
        await asyncio.sleep(0.01)
        q.put([])
        await asyncio.sleep(0.01)
        assert not writer.done() and peer.frames == []
        q.put(["x"])
        q.put(["y"])  # the writer was woken already and has not run: its waiter is gone
        assert await peer.until(2) == ["x", "y"]
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


async def test_each_protocols_audio_goes_out_as_its_exact_event() -> None:
    for session in (OpenAIRealtime(api_key="sk-test-000000000000"), GeminiLive(api_key="k")):
        async with connected() as (peer, ws):
            q = session.outbox
            writer = asyncio.get_running_loop().create_task(q.write(ws))
            blocks = [bytes([k]) * 960 for k in range(3)] + [b"\x07" * 10]
            for pcm in blocks:
                session.send_audio(pcm)
            texts = await peer.until(4)
            assert texts == [session.audio_message(pcm) for pcm in blocks]
            events = [orjson.loads(t) for t in texts]
            data = [e["audio"] if "audio" in e else e["realtimeInput"]["audio"]["data"] for e in events]
            assert [base64.b64decode(d) for d in data] == blocks
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


def test_the_encoder_reuses_its_buffer_and_resizes_it_for_other_sizes() -> None:
    encode = AudioEncoder(b"<", b">")
    assert encode.buffer == bytearray(b"<")
    first = encode(b"abc")
    assert bytes(first) == b"<YWJj>" and first is encode.buffer
    assert bytes(encode(b"xyz")) == b"<eHl6>" and encode(b"xyz") is first
    assert bytes(encode(b"ab")) == b"<YWI=>"
    assert bytes(encode(b"abcdef")) == b"<YWJjZGVm>"
    assert bytes(encode(b"")) == b"<>"
    assert bytes(encode(b"q")) == b"<cQ==>"
    long = AudioEncoder(b"", b"")
    assert bytes(long(b"\x00" * 57)) == base64.b64encode(b"\x00" * 57)  # no newline every 76 characters


def test_a_suffix_longer_than_the_change_in_size_is_not_mistaken_for_the_same_size() -> None:
    encode = AudioEncoder(b"[", b"]]]]")
    assert bytes(encode(b"abc")) == b"[YWJj]]]]"
    assert bytes(encode(b"abcdef")) == b"[YWJjZGVm]]]]"
    assert bytes(encode(b"a")) == b"[YQ==]]]]"


async def test_the_idle_writer_waits_on_one_future_made_when_the_queue_ran_dry() -> None:
    sent: list[Any] = []

    class Socket:
        async def send_str(self, data: str) -> None:
            sent.append(data)

        async def send_frame(self, data: Any, opcode: Any) -> None:
            sent.append(bytes(data))

        async def close(self) -> None:
            sent.append("closed")

    q = SendQueue(8, hex_encode)
    writer = asyncio.get_running_loop().create_task(q.write(Socket()))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    for k in range(4):
        q.put_audio(bytes([k]))
    q.put(["t"])
    await asyncio.sleep(0)
    assert sent == [b'{"pcm":"00"}', b'{"pcm":"01"}', b'{"pcm":"02"}', b'{"pcm":"03"}', "t"]
    q.close_after()
    await asyncio.sleep(0)
    assert sent[-1] == "closed" and writer.done()


async def test_audio_queued_while_the_first_batch_is_being_sent_rides_along() -> None:
    gate = asyncio.Event()
    sent: list[Any] = []

    class Slow:  # a socket whose first send waits (the kernel's buffer full): the writer yields mid-batch
        async def send_str(self, data: str) -> None:
            await gate.wait()
            sent.append(data)

        async def send_frame(self, data: Any, opcode: Any) -> None:
            sent.append(bytes(data))

        async def close(self) -> None:
            sent.append("closed")

    q = SendQueue(8, hex_encode)
    q.put_first(["setup"])
    writer = asyncio.get_running_loop().create_task(q.write(Slow()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    q.put_audio(b"\x01")  # the writer is busy, not idle: nothing to wake
    q.close_after()
    gate.set()
    await asyncio.wait_for(writer, 5)
    assert sent == ["setup", b'{"pcm":"01"}', "closed"]
