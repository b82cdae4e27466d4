"""Pins down rxkit.speech.openai where mutation testing found it loose (issue 18).

The loopback server of tests/speech/ speaks OpenAI's transcription and
speech endpoints as documented; a scripted peer here plays what such a
server may also do: answer a streaming request with one JSON body, end an
event stream early or cleanly without its last event, send an error event
(``{"error": {...}}`` as the SDK's stream reader looks for it, or
``{"type": "error", ...}``), or a malformed one.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from rxkit.elements import Transcript
from rxkit.errors import AuthenticationError, ConfigError, ProviderError, StreamInterruptedError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech import OpenAISTT, OpenAITTS
from rxkit.speech.openai import MAX_SPEECH_CHARS, MAX_UPLOAD_BYTES
from tests.speech.servers import API_KEY, SpeechServer, word_audio

Respond = Callable[[web.Request], Awaitable[web.StreamResponse]]
WAV_HEADER = 44  # bytes of a 16-bit mono WAV file before its samples


class HttpPeer:
    """An HTTP server on 127.0.0.1 that answers both speech endpoints with ``respond``."""

    def __init__(self) -> None:
        self.respond: Respond | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        assert self.respond is not None
        return await self.respond(request)


@pytest.fixture
async def peer() -> AsyncIterator[HttpPeer]:
    p = HttpPeer()
    app = web.Application(client_max_size=30 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", p.handle)
    app.router.add_post("/v1/audio/speech", p.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        yield p
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer() as s:
        yield s


def sse(*events: Any, content_type: str = "text/event-stream") -> Respond:
    """Answer with these events (dicts as JSON, strings as they are), then end the stream cleanly."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for event in events:
            data = event if isinstance(event, str) else json.dumps(event)
            await response.write(f"data: {data}\n\n".encode())
        await response.write_eof()
        return response

    return respond


def body(data: Any, content_type: str = "application/json") -> Respond:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(body=json.dumps(data).encode(), content_type=content_type)

    return respond


async def stt_text(peer: HttpPeer, model: str = "gpt-4o-mini-transcribe") -> str:
    rec = OpenAISTT(model, api_key=API_KEY, base_url=peer.url).start()
    await rec.feed(bytes(3200), 16_000)
    final = await rec.finish()
    assert final.final is True
    return final.text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- transcription: one utterance, its upload ------------------------------------------------


async def test_an_utterance_takes_no_audio_once_finished_or_closed(server: SpeechServer) -> None:
    stt = OpenAISTT(api_key=API_KEY, base_url=server.url + "/v1")
    assert await stt.start().finish() == Transcript("", final=True)  # no audio: nothing asked
    assert server.requests == []
    rec = stt.start()
    await rec.feed(bytes(3200), 16_000)
    assert (await rec.finish()).text == server.transcript
    with pytest.raises(ConfigError) as info:
        await rec.feed(bytes(3200), 16_000)
    assert str(info.value) == "this utterance has already finished; call stt.start() for the next one"
    with pytest.raises(ConfigError) as info:
        await rec.finish()
    assert str(info.value) == "this utterance has already finished"
    rec = stt.start()
    await rec.feed(bytes(3200), 16_000)
    rec.close()  # abandoned: nothing is sent, and it takes nothing more
    with pytest.raises(ConfigError, match=r"already finished; call stt\.start"):
        await rec.feed(bytes(3200), 16_000)
    with pytest.raises(ConfigError, match=r"^this utterance has already finished$"):
        await rec.finish()
    assert len(server.requests) == 1
    await server.settled()


async def test_the_upload_is_a_wav_file_with_the_prompt(server: SpeechServer) -> None:
    stt = OpenAISTT("gpt-4o-transcribe", api_key=API_KEY, base_url=server.url + "/v1", prompt="Paris, weather")
    rec = stt.start()
    await rec.feed(bytes(32_000))  # 16 kHz mono unless told otherwise: one second, as it is
    for _ in range(2):  # the utterance's audio is collected in order, then sent as one file
        await rec.feed(bytes(3200), 16_000)
    assert (await rec.finish()) == Transcript(server.transcript, final=True)
    (req,) = server.requests
    assert req["file"] == ("speech.wav", "audio/wav")
    assert req["fields"] == {"model": "gpt-4o-transcribe", "response_format": "json", "stream": "true",
                             "prompt": "Paris, weather"}  # fmt: skip
    assert req["wav"] == (16_000, 1, 2, 16_000 + 3200)


async def test_the_upload_limit_is_the_apis_25_mib_exactly(server: SpeechServer) -> None:
    stt = OpenAISTT("whisper-1", api_key=API_KEY, base_url=server.url + "/v1")
    at_limit = MAX_UPLOAD_BYTES - WAV_HEADER
    assert MAX_UPLOAD_BYTES == 25 * 1024 * 1024
    assert await stt.atranscribe(bytes(at_limit), 16_000) == server.transcript  # a file of 25 MiB goes
    assert server.requests[0]["wav"][3] == at_limit // 2
    with pytest.raises(ConfigError) as info:
        await stt.atranscribe(bytes(at_limit + 2), 16_000)  # one sample more does not
    assert str(info.value) == (
        f"openai-stt: {MAX_UPLOAD_BYTES + 2} bytes of audio is over the API's 25 MB limit per request"
    )
    assert len(server.requests) == 1  # refused before anything was sent


# -- transcription: what comes back ---------------------------------------------------------------


async def test_a_json_answer_to_a_streaming_request_is_read_whole_and_trimmed(peer: HttpPeer) -> None:
    peer.respond = body({"text": "  Go forward.\n", "usage": {"type": "duration", "seconds": 1}})
    assert await stt_text(peer) == "Go forward."  # a compatible server that does not stream
    assert await stt_text(peer, "whisper-1") == "Go forward."
    peer.respond = body({"usage": {}})
    assert await stt_text(peer, "whisper-1") == ""  # no text: nothing was heard


async def test_the_done_events_text_is_the_transcript_trimmed(peer: HttpPeer) -> None:
    peer.respond = sse(
        {"type": "transcript.text.delta", "delta": "go"},
        {"type": "transcript.text.delta", "delta": " forwrd"},
        {"type": "transcript.text.done", "text": " Go forward. "},  # the whole text, as the model settled it
    )
    assert await stt_text(peer) == "Go forward."


async def test_a_done_event_without_text_gives_the_deltas_joined(peer: HttpPeer) -> None:
    peer.respond = sse(
        {"type": "transcript.text.delta", "delta": " go"},
        {"type": "transcript.text.delta", "logprobs": None},  # no delta: adds nothing
        {"type": "transcript.text.delta", "delta": " forward "},
        {"type": "transcript.text.done"},
    )
    assert await stt_text(peer) == "go forward"


async def test_a_stream_that_ends_cleanly_before_done_is_interrupted_with_the_text_so_far(peer: HttpPeer) -> None:
    peer.respond = sse(
        {"type": "transcript.text.delta", "delta": "go"},
        {"type": "transcript.text.delta"},
        {"type": "transcript.text.delta", "delta": " forward"},
    )
    with pytest.raises(StreamInterruptedError) as info:
        await stt_text(peer)
    assert str(info.value) == "openai-stt: the stream ended before transcript.text.done"
    assert info.value.partial == "go forward" and info.value.provider == "openai-stt"


@pytest.mark.parametrize(
    ("event", "error", "text"),
    [
        (
            {"error": {"message": "The server had an error.", "type": "server_error", "code": None}},
            ProviderError,
            "openai-stt: The server had an error.",
        ),  # how the SDK's stream reader finds an error: an "error" field, whatever the type
        (
            {"type": "error", "error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}},
            AuthenticationError,
            "openai-stt: Incorrect API key provided.",
        ),
        ({"type": "error", "message": "Audio too short."}, ProviderError, "openai-stt: Audio too short."),
    ],
)
async def test_an_error_event_in_the_transcript_stream_is_typed(
    peer: HttpPeer, event: dict[str, Any], error: type[Exception], text: str
) -> None:
    peer.respond = sse({"type": "transcript.text.delta", "delta": "go"}, event)
    with pytest.raises(error) as info:
        await stt_text(peer)
    assert type(info.value) is error and str(info.value) == text


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("[DONE", "JSONDecodeError"),
        ("[1, 2]", "AttributeError"),
        ('{"type": "transcript.text.delta", "delta": 5}', "TypeError"),
    ],
)
async def test_a_malformed_transcript_event_is_a_provider_error(peer: HttpPeer, event: str, kind: str) -> None:
    peer.respond = sse(event, {"type": "transcript.text.done", "text": "go"})
    with pytest.raises(ProviderError) as info:
        await stt_text(peer)
    assert type(info.value) is ProviderError and str(info.value) == f"openai-stt: a malformed event: {kind}"
    assert info.value.provider == "openai-stt"


async def test_a_transcription_server_nobody_runs_is_a_stream_interruption() -> None:
    stt = OpenAISTT(api_key=API_KEY, base_url=f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(StreamInterruptedError) as info:
        await stt.atranscribe(bytes(3200), 16_000)
    assert str(info.value) == "openai-stt: the connection failed: ClientConnectorError"
    assert info.value.provider == "openai-stt"


# -- speech ------------------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [0.25, 4.0])
async def test_speed_at_either_end_of_the_range_is_sent(server: SpeechServer, speed: float) -> None:
    tts = OpenAITTS("tts-1", api_key=API_KEY, base_url=server.url + "/v1", voice="echo", speed=speed)
    assert await tts.asynthesize("one two") == word_audio(2, 24_000)
    assert server.requests[0]["body"] == {
        "model": "tts-1", "input": "one two", "voice": "echo", "response_format": "pcm",
        "stream_format": "audio", "speed": speed,
    }  # fmt: skip
    assert server.requests[0]["content_type"] == "application/json"


@pytest.mark.parametrize("speed", [0.24, 4.01, 0.0])
def test_speed_out_of_range_is_refused(speed: float) -> None:
    with pytest.raises(ConfigError) as info:
        OpenAITTS(api_key="k", speed=speed)
    assert str(info.value) == f"openai-tts: speed must be 0.25..4.0, not {speed}"


async def test_the_input_limit_is_4096_characters_exactly(server: SpeechServer) -> None:
    tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1")
    assert MAX_SPEECH_CHARS == 4096
    text = "x" * 4096  # one long word: the server says it quickly
    assert await tts.asynthesize(text) == word_audio(1, 24_000)
    with pytest.raises(ConfigError) as info:
        await tts.asynthesize(text + "b")
    assert str(info.value) == "openai-tts: 4097 characters is over the API's 4096 per request"
    assert len(server.requests) == 1


async def test_the_sse_stream_yields_each_delta_and_ignores_other_events(peer: HttpPeer) -> None:
    peer.respond = sse(
        {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x01\x02\x03\x04").decode()},
        {"type": "speech.audio.delta"},  # no audio: nothing
        {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x05\x06").decode()},
        {"type": "speech.audio.done", "usage": {"input_tokens": 2, "output_tokens": 20, "total_tokens": 22}},
    )
    tts = OpenAITTS(api_key=API_KEY, base_url=peer.url)
    assert [c async for c in tts.astream("Hello.")] == [b"\x01\x02\x03\x04", b"\x05\x06"]


async def test_raw_pcm_is_read_whatever_the_model_when_the_answer_is_not_sse(peer: HttpPeer) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x01\x02\x03\x04", content_type="audio/pcm")

    peer.respond = respond  # a compatible server that always answers raw audio
    assert await OpenAITTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.") == b"\x01\x02\x03\x04"


async def test_an_sse_stream_that_ends_cleanly_before_done_is_interrupted(peer: HttpPeer) -> None:
    peer.respond = sse({"type": "speech.audio.delta", "audio": base64.b64encode(b"\x01\x02").decode()})
    tts = OpenAITTS(api_key=API_KEY, base_url=peer.url)
    stream = tts.astream("Hello.")
    assert await anext(stream) == b"\x01\x02"  # what came is played
    with pytest.raises(StreamInterruptedError) as info:
        await anext(stream)
    assert str(info.value) == "openai-tts: the stream ended before speech.audio.done"
    assert info.value.provider == "openai-tts"


@pytest.mark.parametrize(
    ("event", "error", "text"),
    [
        (
            {"error": {"message": "The server had an error.", "type": "server_error"}},
            ProviderError,
            "openai-tts: The server had an error.",
        ),
        (
            {"type": "error", "error": {"message": "Invalid API key.", "code": "invalid_api_key"}},
            AuthenticationError,
            "openai-tts: Invalid API key.",
        ),
        ({"type": "error", "message": "Voice not found."}, ProviderError, "openai-tts: Voice not found."),
    ],
)
async def test_an_error_event_in_the_speech_stream_is_typed(
    peer: HttpPeer, event: dict[str, Any], error: type[Exception], text: str
) -> None:
    peer.respond = sse(event, {"type": "speech.audio.done"})
    with pytest.raises(error) as info:
        await OpenAITTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert type(info.value) is error and str(info.value) == text


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("not json", "JSONDecodeError"),
        ('{"type": "speech.audio.delta", "audio": "abc"}', "Error"),
        ("[1, 2]", "AttributeError"),  # JSON, but not an event object
    ],
)
async def test_a_malformed_speech_event_is_a_provider_error(peer: HttpPeer, event: str, kind: str) -> None:
    peer.respond = sse(event, {"type": "speech.audio.done"})
    with pytest.raises(ProviderError) as info:
        await OpenAITTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert type(info.value) is ProviderError and str(info.value) == f"openai-tts: a malformed event: {kind}"
    assert info.value.provider == "openai-tts"


async def test_a_speech_server_nobody_runs_is_a_stream_interruption() -> None:
    tts = OpenAITTS(api_key=API_KEY, base_url=f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(StreamInterruptedError) as info:
        await tts.asynthesize("Hello.")
    assert str(info.value) == "openai-tts: the connection failed: ClientConnectorError"
    assert info.value.provider == "openai-tts"


# -- construction: where the key, address, options and client come from ------------------------------


def test_both_engines_take_their_key_and_address_from_the_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.example:8080/v1/")
    for engine in (OpenAISTT(), OpenAITTS()):
        assert engine.service.key() == "sk-from-env-0123456789"
        assert engine.service.base_url == "http://proxy.example:8080/v1"
        assert engine.service.name == engine.name
    assert (OpenAISTT.name, OpenAITTS.name) == ("openai-stt", "openai-tts")


def test_both_engines_use_the_options_and_client_given() -> None:
    options = HTTPOptions(idle_timeout=3.0, connect_timeout=2.0)
    client = HttpClient(HTTPOptions(idle_timeout=7.0))
    for kind in (OpenAISTT, OpenAITTS):
        assert kind(api_key="k", options=options).service.options is options
        engine = kind(api_key="k", client=client)
        assert engine.service.client is client and engine.service.options.idle_timeout == 7.0


async def test_the_default_voice_is_alloy(server: SpeechServer) -> None:
    tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1")
    await tts.asynthesize("Hi.")
    assert server.requests[0]["body"]["voice"] == "alloy"
    assert "speed" not in server.requests[0]["body"] and "instructions" not in server.requests[0]["body"]


async def test_events_with_a_null_error_field_are_not_errors(peer: HttpPeer) -> None:
    audio = base64.b64encode(b"\x01\x02").decode()
    peer.respond = sse(
        {"type": "speech.audio.delta", "audio": audio, "error": None},
        {"type": "speech.audio.usage", "error": None},  # an event rxkit does not read
        {"type": "speech.audio.done", "error": None},
    )
    assert await OpenAITTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.") == b"\x01\x02"
    peer.respond = sse(
        {"type": "transcript.text.delta", "delta": "go", "error": None},
        {"type": "transcript.text.segment", "error": None},
        {"type": "transcript.text.done", "text": "go", "error": None},
    )
    assert await stt_text(peer) == "go"


async def test_an_error_given_as_text_is_the_message(peer: HttpPeer) -> None:
    peer.respond = sse({"error": "Rate limit reached."}, {"type": "speech.audio.done"})
    with pytest.raises(ProviderError) as info:
        await OpenAITTS(api_key=API_KEY, base_url=peer.url).asynthesize("Hello.")
    assert type(info.value) is ProviderError and str(info.value) == "openai-tts: Rate limit reached."
    peer.respond = sse({"type": "error", "error": None, "message": "Audio too short."})
    with pytest.raises(ProviderError) as info:
        await stt_text(peer)
    assert str(info.value) == "openai-stt: Audio too short."
