"""Pins down rxkit.speech's shared service code where mutation testing found it loose (issue 18).

A scripted WebSocket peer on 127.0.0.1 plays what a real server may do
on the Deepgram and ElevenLabs sockets: answer late or never, send a
message that is not JSON or JSON in a binary frame, send an error
message, close with an error code, refuse the handshake. The engines
must turn each into the typed error that says what happened (never the
key), and the addresses and keys must come from where the docs say.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ProviderError,
    ProviderHTTPError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from rxkit.providers.http import HTTPOptions
from rxkit.speech import DeepgramSTT, ElevenLabsTTS, OpenAITTS
from tests.speech.servers import API_KEY, SpeechServer

Script = Callable[[web.WebSocketResponse], Awaitable[None]]
PCM = bytes(6400)  # 0.2 s of 16 kHz mono silence


class Peer:
    """A WebSocket server that runs ``script`` on each connection (or refuses the handshake with ``refuse``)."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.refuse: web.Response | None = None
        self.url = ""
        self.received: list[Any] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse is not None:
            return self.refuse
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        assert self.script is not None
        await self.script(ws)
        return ws

    async def read(self, ws: web.WebSocketResponse, until: Callable[[Any], bool]) -> None:
        """Read what the client sends until ``until(message)`` holds."""
        async for msg in ws:
            self.received.append(msg.data)
            if until(msg):
                return


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    app = web.Application()
    app.router.add_get("/v1/listen", p.handle)
    app.router.add_get("/v1/text-to-speech/{voice}/stream-input", p.handle)
    app.router.add_post("/v1/audio/speech", p.handle)  # refusals only
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield p
    finally:
        await runner.cleanup()


def closes_stream(msg: Any) -> bool:
    return msg.type == WSMsgType.TEXT and "CloseStream" in msg.data


async def transcribe(peer: Peer, **options: Any) -> str:
    stt = DeepgramSTT(api_key=API_KEY, base_url=peer.url, **options)
    rec = stt.start(partials=False)
    try:
        await rec.feed(PCM, 16_000)
        return (await rec.finish()).text
    finally:
        rec.close()


def results(text: str) -> dict[str, Any]:
    return {"type": "Results", "is_final": True, "channel": {"alternatives": [{"transcript": text}]}}


# -- messages --------------------------------------------------------------------------------


async def test_json_in_a_binary_frame_is_read_like_text(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_bytes(json.dumps(results("go forward")).encode())
        await ws.close(code=1000)

    peer.script = script
    assert await transcribe(peer) == "go forward"


async def test_a_message_that_is_not_json_is_a_provider_error(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str("<html>502 Bad Gateway</html>")
        await ws.close(code=1000)

    peer.script = script
    with pytest.raises(ProviderError, match=r"^deepgram: the server sent a message that is not JSON$") as info:
        await transcribe(peer)
    assert info.value.provider == "deepgram"


async def test_a_server_ping_is_answered_and_not_taken_for_a_message(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.ping(b"keepalive")
        await ws.send_str(json.dumps(results("still here")))
        await ws.close(code=1000)

    peer.script = script
    assert await transcribe(peer) == "still here"


async def test_a_server_that_goes_quiet_times_out_after_idle_timeout(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: False)  # reads on, never answers

    peer.script = script
    with pytest.raises(ProviderTimeoutError) as info:
        await transcribe(peer, options=HTTPOptions(idle_timeout=0.2))
    assert str(info.value) == "deepgram: no message for 0.2 s while waiting for the last result"
    assert info.value.provider == "deepgram"


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [
        # Deepgram's error message on the socket
        (
            {"type": "Error", "err_code": "DATA-0000", "err_msg": "The audio could not be decoded."},
            ProviderError,
            "deepgram: The audio could not be decoded. (DATA-0000)",
        ),
        (
            {"type": "Error", "description": "Too much silence.", "variant": "NET-0001"},
            ProviderError,
            "deepgram: Too much silence. (NET-0001)",
        ),
        ({"type": "Error", "error": "overloaded"}, ProviderError, "deepgram: overloaded"),
        (
            {"type": "Error", "message": "Quota exceeded.", "error": "quota_exceeded"},  # ElevenLabs' fields
            ProviderError,
            "deepgram: Quota exceeded. (quota_exceeded)",
        ),  # the kind is the message
        ({"type": "Error"}, ProviderError, "deepgram: {'type': 'Error'}"),  # nothing to go by: the message itself
        (
            {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."},
            AuthenticationError,
            "deepgram: Invalid credentials. (INVALID_AUTH)",
        ),
        ({"type": "Error", "message": "The API key has expired"}, AuthenticationError, None),
        ({"type": "Error", "message": "missing api_key parameter"}, AuthenticationError, None),
    ],
)
async def test_an_error_message_on_the_socket_is_typed(
    peer: Peer, message: dict[str, Any], error: type[Exception], text: str | None
) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str(json.dumps(message))
        await ws.close(code=1000)

    peer.script = script
    with pytest.raises(error) as info:
        await transcribe(peer)
    assert type(info.value) is error and info.value.provider == "deepgram"  # type: ignore[attr-defined]
    if text is not None:
        assert str(info.value) == text
    if error is AuthenticationError:
        assert info.value.status == 401  # type: ignore[attr-defined]


# -- closes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "error", "text"),
    [
        (1011, "", ProviderError, "deepgram: the server closed the connection (code 1011) before the last result"),
        (
            1011,
            "NET-0001: no audio",
            ProviderError,
            "deepgram: the server closed the connection (code 1011: NET-0001: no audio) before the last result",
        ),
        (1008, "DATA-0000: bad data", ProviderError, None),  # a policy close that is not about the key
        (1008, "Authentication failed", AuthenticationError, "deepgram: Authentication failed"),
        (4001, "auth: key revoked", AuthenticationError, "deepgram: auth: key revoked"),
        (4003, "Unauthorized", AuthenticationError, "deepgram: Unauthorized"),
        (4002, "auth is fine, quota is not", ProviderError, None),
    ],
)
async def test_a_close_with_an_error_code_is_typed(
    peer: Peer, code: int, reason: str, error: type[Exception], text: str | None
) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.close(code=code, message=reason.encode())

    peer.script = script
    with pytest.raises(error) as info:
        await transcribe(peer)
    assert type(info.value) is error and info.value.provider == "deepgram"  # type: ignore[attr-defined]
    if text is not None:
        assert str(info.value) == text
    if error is AuthenticationError:
        assert info.value.status == 401  # type: ignore[attr-defined]


async def test_a_normal_close_before_any_result_is_an_empty_transcript(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.close(code=1000)

    peer.script = script
    assert await transcribe(peer) == ""


# -- handshakes and addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "error", "text"),
    [
        (429, {"x-error": "too many sockets"}, RateLimitError, "HTTP 429: too many sockets"),
        (403, {"dg-error": "Insufficient permissions."}, AuthenticationError, "HTTP 403: Insufficient permissions."),
        (503, {}, ProviderServerError, "HTTP 503: Invalid response status"),  # no header: aiohttp's reason
        (400, {"dg-error": ""}, ProviderHTTPError, "HTTP 400: Invalid response status"),
    ],
)
async def test_a_refused_handshake_is_the_typed_http_error(
    peer: Peer, status: int, headers: dict[str, str], error: type[Exception], text: str
) -> None:
    peer.refuse = web.Response(status=status, headers=headers, text="refused")
    rec = DeepgramSTT(api_key=API_KEY, base_url=peer.url).start()
    with pytest.raises(error) as info:
        await rec.feed(PCM, 16_000)
    assert type(info.value) is error and str(info.value) == f"deepgram: {text}"
    rec.close()


async def test_nobody_listening_is_a_stream_interruption_naming_the_address() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = DeepgramSTT(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}").start()
    with pytest.raises(StreamInterruptedError) as info:
        await rec.feed(PCM, 16_000)
    assert str(info.value).startswith(f"deepgram: cannot connect to ws://127.0.0.1:{port}/v1/listen?model=nova-3&")
    assert f"Cannot connect to host 127.0.0.1:{port}" in str(info.value)  # aiohttp's own words, redacted
    assert info.value.provider == "deepgram"
    rec.close()


def test_addresses_keep_their_scheme_as_websockets_and_lose_a_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_BASE_URL", raising=False)
    assert DeepgramSTT(api_key="k").url(True).startswith("wss://api.deepgram.com/v1/listen?")
    assert DeepgramSTT(api_key="k", base_url="https://dg.example/").url(True).startswith("wss://dg.example/v1/listen?")
    monkeypatch.setenv("DEEPGRAM_BASE_URL", "http://from-env:1")
    assert DeepgramSTT(api_key="k").url(True).startswith("ws://from-env:1/v1/listen?")
    assert DeepgramSTT(api_key="k", base_url="http://given:2").url(True).startswith("ws://given:2/v1/listen?")
    assert ElevenLabsTTS(api_key="k", base_url="https://el.example//").service.base_url == "https://el.example"
    assert ElevenLabsTTS(api_key="k", base_url="https://el.example/X/").service.base_url == "https://el.example/X"


def test_a_base_url_that_is_not_http_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        DeepgramSTT(api_key="k", base_url="wss://user:hunter2secret@dg.example")
    assert "deepgram: base_url must start with http:// or https://" in str(info.value)
    assert "hunter2secret" not in str(info.value)


def test_an_empty_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi-from-env-123456")
    assert ElevenLabsTTS(api_key="").service.key() == "xi-from-env-123456"  # "" falls back to the variable
    monkeypatch.setenv("ELEVENLABS_API_KEY", "")
    with pytest.raises(ConfigError, match=r"^elevenlabs needs an API key: set ELEVENLABS_API_KEY or pass api_key=$"):
        ElevenLabsTTS(api_key="").service.key()


async def test_an_http_error_status_from_400_up_is_typed() -> None:
    async with SpeechServer() as server:
        tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1", voice="")  # the API needs a voice
        with pytest.raises(ProviderHTTPError) as info:
            await tts.asynthesize("hello")
        assert info.value.status == 400 and "Missing required parameter: 'voice'" in str(info.value)
        assert tts.service.options.idle_timeout == HTTPOptions().idle_timeout  # the client's options, shown


# -- the engine bases: blocking twins, whole samples, what they show ---------------------------------


def test_the_blocking_transcribe_runs_its_own_loop_and_is_refused_inside_one() -> None:
    async def serve_and_call() -> None:
        async with SpeechServer(transcript="go forward") as server:
            stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
            text = await asyncio.to_thread(stt.transcribe, bytes(16_000), 16_000)  # 0.5 s: two words revealed
            assert text == "go forward"
            assert [r["controls"] for r in server.requests] == [["CloseStream"]]  # one socket, closed properly
            with pytest.raises(ConfigError, match=r"^DeepgramSTT.transcribe blocks: inside an event loop, await"):
                stt.transcribe(bytes(16_000), 16_000)
            await server.settled()

    asyncio.run(serve_and_call())


async def test_a_sample_split_across_three_messages_comes_out_whole(peer: Peer) -> None:
    import base64

    pcm = bytes(range(1, 13))  # six samples, cut after bytes 3, 4 and 7: odd, even, odd

    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: json.loads(msg.data).get("text") == "")
        for piece in (pcm[:3], pcm[3:4], pcm[4:7], pcm[7:]):
            await ws.send_str(json.dumps({"audio": base64.b64encode(piece).decode()}))
        await ws.send_str(json.dumps({"isFinal": True}))
        await ws.close(code=1000)

    peer.script = script
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=peer.url)
    chunks = [c async for c in tts.astream("Hello.")]
    assert chunks == [pcm[:2], pcm[2:4], pcm[4:6], pcm[6:]]  # each chunk whole samples, in order, nothing lost
    assert await tts.asynthesize("...") == b""  # nothing to say: no socket
    assert len([m for m in peer.received if "Hello" in m]) == 1


def test_engines_show_their_address_scrubbed() -> None:
    stt = DeepgramSTT(api_key="k", base_url="https://user:pw-secret-123@dg.example")
    tts = OpenAITTS(api_key="k", base_url="https://proxy.example/v1")
    assert repr(stt) == "DeepgramSTT(base_url='https://user:***@dg.example')"
    assert repr(tts) == "OpenAITTS(base_url='https://proxy.example/v1')"
    stt.close(), tts.close(), stt.close()  # nothing to stop: idempotent


async def test_a_connection_dropped_mid_utterance_is_a_stream_interruption(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        assert ws._req is not None and ws._req.transport is not None
        ws._req.transport.abort()  # no close frame: the TCP connection just goes

    peer.script = script
    with pytest.raises(StreamInterruptedError) as info:
        await transcribe(peer)
    assert str(info.value) == "deepgram: the connection dropped before the last result"
    assert info.value.provider == "deepgram"


async def test_a_message_over_16_mib_closes_the_socket_with_the_reason(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str(json.dumps(results("x" * (16 * 1024 * 1024))))
        await ws.close(code=1000)

    peer.script = script
    with pytest.raises(ProviderError) as info:
        await transcribe(peer)
    assert str(info.value).startswith("deepgram: the server closed the connection (code 1009: Message size ")
    assert str(info.value).endswith("exceeds limit 16777216) before the last result")


async def test_closed_normally_before_the_final_message_is_an_error(peer: Peer) -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, lambda msg: json.loads(msg.data).get("text") == "")
        await ws.close(code=1000)  # no isFinal

    peer.script = script
    with pytest.raises(ProviderError) as info:
        await ElevenLabsTTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert str(info.value) == "elevenlabs: the server closed the connection (code 1000) before the final message"


async def test_an_http_error_body_that_is_not_utf8_is_still_the_typed_error(peer: Peer) -> None:
    peer.refuse = web.Response(status=500, body=b"\xff\xfe upstream failed", content_type="text/plain")
    tts = OpenAITTS(api_key=API_KEY, base_url=peer.url + "/v1")
    with pytest.raises(ProviderServerError) as info:
        await tts.asynthesize("Hello.")
    assert str(info.value).startswith("openai-tts: HTTP 500: ") and "upstream failed" in str(info.value)
    assert info.value.provider == "openai-tts"


async def test_a_key_the_server_echoes_is_scrubbed_even_when_it_does_not_look_like_a_key(peer: Peer) -> None:
    # no key-shaped pattern would catch it: only registering it as a secret does (new each run: the registry is global)
    key = f"plain words as a key {uuid.uuid4().hex}"

    async def script(ws: web.WebSocketResponse) -> None:
        await peer.read(ws, closes_stream)
        await ws.send_str(json.dumps({"type": "Error", "err_msg": f"No project for key {key}."}))
        await ws.close(code=1000)

    peer.script = script
    rec = DeepgramSTT(api_key=key, base_url=peer.url).start(partials=False)
    with pytest.raises(ProviderError) as info:
        await rec.feed(PCM, 16_000)
        await rec.finish()
    rec.close()
    assert str(info.value) == "deepgram: No project for key ***."


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 1), (16_000, 2), (16_000, 1)])
async def test_audio_goes_out_as_16khz_mono_whatever_it_came_as(rate: int, channels: int) -> None:
    async with SpeechServer() as server:
        rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start(partials=False)
        await rec.feed(bytes(2 * channels * rate // 2), rate, channels)  # 0.5 s
        await rec.finish()
        rec.close()
        assert server.requests[0]["audio"] == 16_000  # 0.5 s at 16 kHz, 16-bit mono
        await server.settled()


# -- the engine bases (rxkit.speech._engines): what atranscribe and transcribe send by default ----------


@pytest.mark.parametrize(
    ("args", "sent"),
    [
        ((), 96_000),  # 16 kHz mono by default: three seconds go out as they are
        ((48_000, 2), 16_000),  # 48 kHz stereo: half a second, converted
    ],
)
async def test_atranscribe_sends_16khz_mono_unless_told_otherwise(args: tuple[int, ...], sent: int) -> None:
    async with SpeechServer(transcript="go forward") as server:
        stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
        assert await stt.atranscribe(bytes(96_000), *args) == "go forward"
        assert server.requests[0]["audio"] == sent
        assert server.requests[0]["query"]["interim_results"] == "false"
        await server.settled()


@pytest.mark.parametrize(("args", "sent"), [((), 96_000), ((48_000, 2), 16_000)])
def test_the_blocking_transcribe_sends_16khz_mono_unless_told_otherwise(args: tuple[int, ...], sent: int) -> None:
    async def serve_and_call() -> None:
        async with SpeechServer(transcript="go forward") as server:
            stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
            assert await asyncio.to_thread(stt.transcribe, bytes(96_000), *args) == "go forward"
            assert server.requests[0]["audio"] == sent
            await server.settled()

    asyncio.run(serve_and_call())


async def test_the_blocking_synthesize_inside_a_loop_names_the_engine_and_method() -> None:
    tts = ElevenLabsTTS(api_key=API_KEY)
    with pytest.raises(ConfigError) as info:
        tts.synthesize("Hello.")
    assert str(info.value) == "ElevenLabsTTS.synthesize blocks: inside an event loop, await its async twin instead"
