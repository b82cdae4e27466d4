"""Pins down rxkit.speech.deepgram where mutation testing found it loose (issue 18).

Against the loopback Deepgram server of tests/speech/ and the scripted
WebSocket peer of test_kill_speech.py: the listen URL's query, partials
handed out once per change, final segments joined, what a Results message
may lack, an error message that arrives while audio is still being fed,
and an utterance used after its end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from rxkit.elements import Transcript
from rxkit.errors import ConfigError, ProviderError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech import DeepgramSTT
from tests.mutation import test_kill_speech
from tests.mutation.test_kill_speech import PCM, Peer, closes_stream, results
from tests.speech.servers import API_KEY, SpeechServer

peer = test_kill_speech.peer  # the scripted WebSocket peer, a fixture

QUARTER = bytes(8000)  # 0.25 s of 16 kHz mono: the loopback server reveals one word per quarter


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer(transcript="go forward ten meters then stop") as s:
        yield s


def test_the_listen_url_carries_every_option() -> None:
    stt = DeepgramSTT(
        "nova-2", language=None, punctuate=False, api_key="k", base_url="https://dg.example",
        params={"keyterm": ["rxkit", "Paris"], "smart_format": False, "diarize": True, "endpointing": 300},
    )  # fmt: skip
    assert stt.url(False) == (
        "wss://dg.example/v1/listen?model=nova-2&encoding=linear16&sample_rate=16000&channels=1"
        "&interim_results=false&punctuate=false&keyterm=rxkit&keyterm=Paris&smart_format=false&diarize=true"
        "&endpointing=300"
    )
    assert DeepgramSTT(api_key="k", base_url="https://dg.example").url(True) == (
        "wss://dg.example/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1"
        "&interim_results=true&punctuate=true&language=en"
    )


async def test_an_utterance_takes_nothing_once_finished_or_closed(server: SpeechServer) -> None:
    stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
    rec = stt.start()
    assert await rec.finish() == Transcript("", final=True)  # no audio: no socket
    assert server.requests == []
    with pytest.raises(ConfigError) as info:
        await rec.feed(PCM, 16_000)
    assert str(info.value) == "this utterance has already finished; call stt.start() for the next one"
    with pytest.raises(ConfigError) as info:
        await rec.finish()
    assert str(info.value) == "this utterance has already finished"
    rec = stt.start()
    await rec.feed(PCM, 16_000)
    rec.close()
    with pytest.raises(ConfigError, match=r"already finished; call stt\.start"):
        await rec.feed(PCM, 16_000)
    with pytest.raises(ConfigError, match=r"^this utterance has already finished$"):
        await rec.finish()
    await server.settled()
    assert server.requests[0]["controls"] == []  # abandoned: no CloseStream, the socket just closed


async def feed_until_quiet(rec: Any, chunks: list[bytes]) -> list[Any]:
    """Feed each chunk, then small frames until the reader has seen the server's answer; every return value."""
    out = []
    for chunk in chunks:
        out.append(await rec.feed(chunk, 16_000))
        for _ in range(5):
            await asyncio.sleep(0.01)
            out.append(await rec.feed(b"\x00\x00", 16_000))
    return out


async def test_a_partial_is_handed_out_once_per_change(server: SpeechServer) -> None:
    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start()
    out = await feed_until_quiet(rec, [QUARTER] * 5)
    partials = [x for x in out if x is not None]
    texts = ("go", "go forward", "go forward ten", "go forward ten meters", "go forward ten meters then")
    assert partials == [Transcript(t, final=False) for t in texts]  # the last: a final segment and an interim
    assert await rec.finish() == Transcript("go forward ten meters then stop", final=True)
    rec.close()
    await server.settled()


async def test_without_partials_feed_hands_out_none(server: SpeechServer) -> None:
    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start(partials=False)
    assert await feed_until_quiet(rec, [QUARTER] * 5) == [None] * 30  # a final segment came: still nothing
    assert (await rec.finish()).text == "go forward ten meters then stop"
    rec.close()
    await server.settled()


async def test_final_segments_are_joined_and_what_a_result_lacks_adds_nothing(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        for message in (
            [1, 2],  # not an object: ignored
            results(" go "),
            {"type": "Results", "is_final": True},  # no channel
            {"type": "Results", "is_final": True, "channel": {"alternatives": []}},
            {"type": "Results", "is_final": True, "channel": {"alternatives": [{}]}},
            {"type": "Metadata", "request_id": "0000", "duration": 0.2},
            {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 0.0},
            {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.2},
            {"type": "Results", "is_final": False, "channel": {"alternatives": [{"transcript": "for"}]}},
            results("forward"),
            {"type": "Results", "is_final": False, "channel": {"alternatives": [{"transcript": "and"}]}},
        ):
            await ws.send_str(json.dumps(message))
        await ws.close(code=1000)

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start(partials=False)
    await rec.feed(PCM, 16_000)
    assert await rec.finish() == Transcript("go forward", final=True)  # an interim left over is not final text
    rec.close()


async def test_an_interim_result_is_replaced_by_the_final_one(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: msg.type == WSMsgType.BINARY)
        await ws.send_str(json.dumps({"type": "Results", "is_final": False,
                                      "channel": {"alternatives": [{"transcript": "go for"}]}}))  # fmt: skip
        await ws.send_str(json.dumps(results("go forward")))
        await ws.send_str(json.dumps({"type": "Results", "is_final": True,
                                      "channel": {"alternatives": [{"transcript": ""}]}}))  # fmt: skip
        await peer.read(ws, closes_stream)
        await ws.close(code=1000)

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    out = [x for x in await feed_until_quiet(rec, [PCM]) if x is not None]
    assert out[-1] == Transcript("go forward", final=False)  # not "go forward go for"
    assert (await rec.finish()).text == "go forward"
    rec.close()


async def test_an_error_message_while_audio_is_fed_is_raised_by_the_next_feed_and_by_finish(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: msg.type == WSMsgType.BINARY)
        await ws.send_str(json.dumps({"type": "Error", "err_code": "DATA-0000", "err_msg": "Bad audio."}))
        await peer.read(ws, lambda msg: False)  # reads on until the client leaves

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    await rec.feed(PCM, 16_000)
    with pytest.raises(ProviderError) as info:
        for _ in range(100):
            await asyncio.sleep(0.01)
            await rec.feed(PCM, 16_000)
    assert str(info.value) == "deepgram: Bad audio. (DATA-0000)"
    sent = len(peer.received)
    with pytest.raises(ProviderError) as again:
        await rec.finish()
    assert again.value is info.value
    assert len(peer.received) == sent  # no CloseStream after an error: the socket is closed instead
    rec.close()


async def test_a_malformed_result_ends_the_utterance_with_a_typed_error(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str(json.dumps({"type": "Results", "is_final": True, "channel": {"alternatives": ["go"]}}))
        await ws.close(code=1000)

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    await rec.feed(PCM, 16_000)
    with pytest.raises(ProviderError) as info:
        await rec.finish()
    assert type(info.value) is ProviderError
    assert str(info.value) == "deepgram: a malformed message: AttributeError" and info.value.provider == "deepgram"
    rec.close()


async def test_feed_takes_16khz_mono_unless_told_otherwise(server: SpeechServer) -> None:
    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start(partials=False)
    await rec.feed(bytes(32_000))  # one second, sent as it is
    assert (await rec.finish()).text == "go forward ten meters then stop"
    assert server.requests[0]["audio"] == 32_000
    rec.close()
    await server.settled()


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"err_msg": "Invalid audio."}, "deepgram: Invalid audio."),  # the HTTP error body's fields, without a type
        ({"err_code": "DATA-0000"}, "deepgram: {'err_code': 'DATA-0000'} (DATA-0000)"),
    ],
)
async def test_a_message_with_only_an_error_field_is_an_error(peer: Peer, message: dict[str, Any], text: str) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str(json.dumps(message))
        await ws.send_str(json.dumps(results("go")))
        await ws.close(code=1000)

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start(partials=False)
    await rec.feed(PCM, 16_000)
    with pytest.raises(ProviderError) as info:
        await rec.finish()
    assert type(info.value) is ProviderError and str(info.value) == text
    rec.close()


async def test_a_normal_close_mid_utterance_fails_the_next_feed_naming_it(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: msg.type == WSMsgType.BINARY)
        await ws.close(code=1000)  # before CloseStream: the utterance is not done

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    await rec.feed(PCM, 16_000)
    with pytest.raises(ProviderError) as info:
        for _ in range(100):
            await asyncio.sleep(0.01)
            await rec.feed(PCM, 16_000)
    assert type(info.value) is ProviderError
    assert str(info.value) == "deepgram: the server closed the connection (code 1000) before the utterance ended"
    rec.close()


async def test_a_finish_cancelled_while_waiting_for_the_last_result_closes_the_socket(peer: Peer) -> None:
    left = asyncio.Event()

    async def script(ws: web.WebSocketResponse) -> None:
        try:
            await peer.read(ws, lambda msg: False)  # takes CloseStream, never answers
        finally:
            left.set()

    peer.script = script
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    await rec.feed(PCM, 16_000)
    finish = asyncio.ensure_future(rec.finish())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if any("CloseStream" in str(m) for m in peer.received):
            break
    finish.cancel()  # a barge-in while the last result is awaited
    with pytest.raises(asyncio.CancelledError):
        await finish
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "rxkit-deepgram-reader" and not t.done()]
    await asyncio.wait_for(left.wait(), 5)  # the socket closed at once, not after idle_timeout
    rec.close()


def test_the_engine_uses_the_client_given() -> None:
    client = HttpClient(HTTPOptions(idle_timeout=7.0))
    stt = DeepgramSTT(api_key="k", client=client)
    assert stt.service.client is client and stt.service.options.idle_timeout == 7.0


async def test_the_reader_task_is_named_while_the_utterance_is_open(server: SpeechServer) -> None:
    def readers() -> int:
        return sum(t.get_name() == "rxkit-deepgram-reader" and not t.done() for t in asyncio.all_tasks())

    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start()
    await rec.feed(QUARTER, 16_000)
    assert readers() == 1  # what a leak report names
    await rec.finish()
    assert readers() == 0
    rec.close()
    await server.settled()
