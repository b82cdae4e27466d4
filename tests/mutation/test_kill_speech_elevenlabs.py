"""Pins down rxkit.speech.elevenlabs where mutation testing found it loose (issue 18).

Against the loopback ElevenLabs server of tests/speech/ and the scripted
WebSocket peer of test_kill_speech.py: the socket's address and query, the
three messages a sentence is sent as, and what the server may answer:
audio and ``isFinal`` in one message, ``isFinal: false``, messages that
carry nothing to play, audio that is not base64, an error message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from rxkit.errors import AuthenticationError, ConfigError, ProviderError, StreamInterruptedError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech import ElevenLabsTTS
from rxkit.speech.elevenlabs import PCM_RATES
from tests.mutation import test_kill_speech
from tests.mutation.test_kill_speech import Peer
from tests.speech.servers import API_KEY, SpeechServer, word_audio

peer = test_kill_speech.peer  # the scripted WebSocket peer, a fixture


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer() as s:
        yield s


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def closing(msg: Any) -> bool:
    return bool(json.loads(msg.data).get("text") == "")


def test_only_the_apis_pcm_rates_and_a_voice_are_taken() -> None:
    assert PCM_RATES == (8_000, 16_000, 22_050, 24_000, 44_100, 48_000)
    for rate in PCM_RATES:
        assert ElevenLabsTTS(api_key="k", sample_rate=rate).url().endswith(f"output_format=pcm_{rate}")
    with pytest.raises(ConfigError) as info:
        ElevenLabsTTS(api_key="k", sample_rate=11_025)
    assert (
        str(info.value) == "elevenlabs: sample_rate must be one of 8000, 16000, 22050, 24000, 44100, 48000, not 11025"
    )
    with pytest.raises(ConfigError) as info:
        ElevenLabsTTS("", api_key="k")
    assert str(info.value) == "elevenlabs: voice_id is empty"


def test_the_socket_address_quotes_the_voice_and_carries_the_language() -> None:
    tts = ElevenLabsTTS("my voice/1", model_id="eleven_multilingual_v2", language_code="de", sample_rate=16_000,
                        api_key="k", base_url="https://el.example")  # fmt: skip
    assert tts.url() == (
        "wss://el.example/v1/text-to-speech/my%20voice%2F1/stream-input"
        "?model_id=eleven_multilingual_v2&output_format=pcm_16000&language_code=de"
    )
    assert tts.sample_rate == 16_000


async def test_a_sentence_goes_as_three_messages_trimmed_and_flushed(server: SpeechServer) -> None:
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=server.url, language_code="en")
    assert await tts.asynthesize("  Hello there.\n") == word_audio(2, 24_000)
    (req,) = server.requests
    assert req["query"] == {"model_id": "eleven_flash_v2_5", "output_format": "pcm_24000", "language_code": "en"}
    assert req["messages"] == [{"text": " "}, {"text": "Hello there. ", "flush": True}, {"text": ""}]
    await server.settled()


async def test_what_the_server_sends_is_played_until_is_final(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closing)
        for message in (
            [1, 2],  # not an object: ignored
            {"audio": b64(b"\x01\x02"), "isFinal": None, "normalizedAlignment": None},
            {"audio": "", "isFinal": False},  # nothing to play, not the end
            {"audio": None, "isFinal": None, "alignment": {"chars": []}},
            {"isFinal": False},
            {"audio": b64(b"\x03\x04"), "isFinal": True},  # the last audio and the end in one message
            {"audio": b64(b"\x05\x06"), "isFinal": True},  # after the end: not read
        ):
            await ws.send_str(json.dumps(message))
        await ws.close(code=1000)

    peer.script = script
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=peer.url)
    assert [c async for c in tts.astream("Hello.")] == [b"\x01\x02", b"\x03\x04"]


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [
        ({"audio": "not base64!"}, ProviderError, "elevenlabs: audio that is not base64"),
        ({"audio": "AQI"}, ProviderError, "elevenlabs: audio that is not base64"),  # padding missing
        (
            {"message": "Quota exceeded.", "error": "quota_exceeded", "code": 1008},
            ProviderError,
            "elevenlabs: Quota exceeded. (quota_exceeded)",
        ),
        ({"error": "input_timeout_exceeded"}, ProviderError, "elevenlabs: input_timeout_exceeded"),
        ({"message": "Invalid API key"}, AuthenticationError, "elevenlabs: Invalid API key"),
    ],
)
async def test_what_cannot_be_played_is_a_typed_error(
    peer: Peer, message: dict[str, Any], error: type[Exception], text: str
) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closing)
        await ws.send_str(json.dumps(message))
        await ws.send_str(json.dumps({"audio": b64(b"\x01\x02"), "isFinal": True}))
        await ws.close(code=1000)

    peer.script = script
    with pytest.raises(error) as info:
        await ElevenLabsTTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert type(info.value) is error and str(info.value) == text
    assert info.value.provider == "elevenlabs"  # type: ignore[attr-defined]


async def test_audio_with_a_character_outside_base64_is_refused_not_skipped(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closing)
        await ws.send_str(json.dumps({"audio": "AQ*I=", "isFinal": True}))  # AQI= with a stray character
        await ws.close(code=1000)

    peer.script = script
    with pytest.raises(ProviderError, match=r"^elevenlabs: audio that is not base64$"):
        await ElevenLabsTTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")


async def test_a_connection_lost_before_the_sentence_was_sent_says_so(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        assert ws._req is not None and ws._req.transport is not None
        ws._req.transport.abort()  # the handshake done, the connection goes before the client says anything

    peer.script = script
    with pytest.raises(StreamInterruptedError) as info:
        await ElevenLabsTTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert str(info.value) == "elevenlabs: the connection dropped before the sentence was sent"


async def test_a_close_while_speaking_names_what_was_missing(server: SpeechServer) -> None:
    server.close_with = (1011, "internal error")
    with pytest.raises(ProviderError) as info:
        await ElevenLabsTTS(api_key=API_KEY, base_url=server.url).asynthesize("one two three")
    assert str(info.value) == (
        "elevenlabs: the server closed the connection (code 1011: internal error) before the sentence's audio"
    )
    await server.settled()


def test_the_engine_uses_the_options_and_client_given() -> None:
    options = HTTPOptions(idle_timeout=3.0)
    client = HttpClient(HTTPOptions(idle_timeout=7.0))
    assert ElevenLabsTTS(api_key="k", options=options).service.options is options
    tts = ElevenLabsTTS(api_key="k", client=client)
    assert tts.service.client is client and tts.service.options.idle_timeout == 7.0
