"""Cloud speech engines against a loopback server speaking each documented protocol, errors included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
)
from rxkit.speech import DeepgramSTT, ElevenLabsTTS, OpenAISTT, OpenAITTS
from tests.speech.servers import API_KEY, WORD_SECONDS, SpeechServer, word_audio


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer() as s:
        yield s


def tone(seconds: float, rate: int, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    mono = (np.sin(2 * np.pi * 220 * t) * 6000).astype(np.int16)
    return np.repeat(mono, channels).tobytes() if channels > 1 else mono.tobytes()


async def feed_in_frames(rec: Any, pcm: bytes, rate: int, channels: int = 1, frame_ms: int = 20) -> list[Any]:
    step = 2 * channels * rate * frame_ms // 1000
    partials = []
    for i in range(0, len(pcm), step):
        partial = await rec.feed(pcm[i : i + step], rate, channels)
        if partial is not None:
            partials.append(partial)
        await asyncio.sleep(0)  # let the reader see the server's answers, as live audio would
    return partials


# -- OpenAI transcription ------------------------------------------------------------------


async def test_openai_stt_streams_the_text_and_uploads_16khz_mono_wav(server: SpeechServer) -> None:
    stt = OpenAISTT(api_key=API_KEY, base_url=server.url + "/v1", language="en")
    rec = stt.start()
    assert await feed_in_frames(rec, tone(1.0, 48_000, 2), 48_000, 2) == []  # whole-file endpoint: no partials
    final = await rec.finish()
    assert final.final and final.text == server.transcript
    (req,) = server.requests
    assert req["fields"] == {
        "model": "gpt-4o-mini-transcribe",
        "response_format": "json",
        "stream": "true",
        "language": "en",
    }
    rate, channels, width, frames = req["wav"]
    assert (rate, channels, width) == (16_000, 1, 2) and abs(frames - 16_000) <= 16
    await server.settled()


async def test_openai_stt_whisper_1_is_not_streamed(server: SpeechServer) -> None:
    stt = OpenAISTT("whisper-1", api_key=API_KEY, base_url=server.url + "/v1")
    assert await stt.atranscribe(tone(0.5, 16_000), 16_000) == server.transcript
    assert "stream" not in server.requests[0]["fields"]


async def test_openai_stt_wrong_key_is_an_authentication_error_that_never_shows_the_key(server: SpeechServer) -> None:
    secret = "sk-wrong-0123456789abcdefXYZ"
    stt = OpenAISTT(api_key=secret, base_url=server.url + "/v1")
    with pytest.raises(AuthenticationError) as info:
        await stt.atranscribe(tone(0.2, 16_000), 16_000)
    assert info.value.status == 401 and "Incorrect API key" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value.__dict__)


async def test_openai_stt_stream_cut_mid_way_is_interrupted_with_the_partial_text(server: SpeechServer) -> None:
    server.drop_after = 3
    stt = OpenAISTT(api_key=API_KEY, base_url=server.url + "/v1")
    with pytest.raises(StreamInterruptedError) as info:
        await stt.atranscribe(tone(0.2, 16_000), 16_000)
    assert info.value.partial == "what is the"


async def test_openai_stt_no_audio_asks_nothing(server: SpeechServer) -> None:
    rec = OpenAISTT(api_key=API_KEY, base_url=server.url + "/v1").start()
    assert (await rec.finish()).text == ""
    assert server.requests == []


def test_missing_keys_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    for engine, env in (
        (OpenAISTT(), "OPENAI_API_KEY"),
        (DeepgramSTT(), "DEEPGRAM_API_KEY"),
        (ElevenLabsTTS(), "ELEVENLABS_API_KEY"),
    ):
        with pytest.raises(ConfigError, match=env):
            engine.service.key()


def test_keys_and_addresses_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-env-key-123456")
    monkeypatch.setenv("DEEPGRAM_BASE_URL", "http://127.0.0.1:9/")
    stt = DeepgramSTT()
    assert stt.service.key() == "dg-env-key-123456"
    assert stt.url(True).startswith("ws://127.0.0.1:9/v1/listen?")
    assert "dg-env-key" not in repr(stt)


def test_blocking_calls_work_outside_an_event_loop() -> None:
    async def serve_and_call() -> None:
        async with SpeechServer() as s:
            tts = OpenAITTS(api_key=API_KEY, base_url=s.url + "/v1")
            text = "one two three"
            # the blocking twin runs its own loop: call it from a thread, as a script's main thread would
            pcm = await asyncio.to_thread(tts.synthesize, text)
            assert pcm == word_audio(3, 24_000)
            with pytest.raises(ConfigError, match="await its async twin"):
                tts.synthesize(text)

    asyncio.run(serve_and_call())


# -- OpenAI speech -----------------------------------------------------------------------


async def test_openai_tts_streams_pcm_as_it_arrives(server: SpeechServer) -> None:
    tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1", voice="coral", instructions="calm")
    chunks = [c async for c in tts.astream("The weather is mild today.")]
    assert len(chunks) == 5 and all(len(c) % 2 == 0 for c in chunks)  # one event a word, each decoded as it came
    assert b"".join(chunks) == word_audio(5, 24_000)
    body = server.requests[0]["body"]
    assert body == {
        "model": "gpt-4o-mini-tts", "input": "The weather is mild today.", "voice": "coral",
        "response_format": "pcm", "stream_format": "sse", "instructions": "calm",
    }  # fmt: skip
    assert tts.sample_rate == 24_000


async def test_openai_tts_1_streams_the_raw_body_and_keeps_whole_samples(server: SpeechServer) -> None:
    tts = OpenAITTS("tts-1", api_key=API_KEY, base_url=server.url + "/v1")
    chunks = [c async for c in tts.astream("one two three four")]
    assert all(len(c) % 2 == 0 for c in chunks)  # the server cut at odd offsets
    assert b"".join(chunks) == word_audio(4, 24_000)
    assert server.requests[0]["body"]["stream_format"] == "audio"


async def test_openai_tts_errors_are_typed(server: SpeechServer) -> None:
    tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1")
    server.fail = (429, "Rate limit reached for requests")
    with pytest.raises(RateLimitError, match="Rate limit reached"):
        await tts.asynthesize("hello")
    with pytest.raises(ConfigError, match="4096"):
        await tts.asynthesize("word " * 1000)
    assert len(server.requests) == 0  # too long: refused before anything was sent
    assert await tts.asynthesize("...") == b""  # nothing to say: nothing sent
    assert len(server.requests) == 0
    server.drop_after = 2
    with pytest.raises(StreamInterruptedError):
        await tts.asynthesize("one two three four")


async def test_openai_tts_abandoned_stream_closes_the_request(server: SpeechServer) -> None:
    server.hang = True
    tts = OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1")
    stream = tts.astream("one two three")
    first = await anext(stream)
    assert first == word_audio(1, 24_000)
    await stream.aclose()  # what a barge-in does to the sentence being spoken
    await asyncio.wait_for(server.gone.wait(), 5)
    await server.settled()


# -- Deepgram ------------------------------------------------------------------------------


async def test_deepgram_partials_while_speaking_and_the_final_after_close_stream(server: SpeechServer) -> None:
    stt = DeepgramSTT(api_key=API_KEY, base_url=server.url, params={"smart_format": True})
    rec = stt.start()
    partials = await feed_in_frames(rec, tone(1.0, 48_000, 2), 48_000, 2)
    final = await rec.finish()
    assert final.final and final.text == server.transcript
    texts = [p.text for p in partials]
    assert texts and texts[0] == "what" and all(not p.final for p in partials)
    assert all(server.transcript.startswith(t) for t in texts)  # growing prefixes, in order
    (req,) = server.requests
    assert req["audio"] == 32_000  # one second, converted to 16 kHz mono
    assert req["controls"] == ["CloseStream"]
    assert req["query"] == {
        "model": "nova-3", "encoding": "linear16", "sample_rate": "16000", "channels": "1",
        "interim_results": "true", "punctuate": "true", "language": "en", "smart_format": "true",
    }  # fmt: skip
    await server.settled()


async def test_deepgram_without_partials_asks_for_none(server: SpeechServer) -> None:
    stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
    assert await stt.atranscribe(tone(0.6, 16_000), 16_000) == server.transcript
    assert server.requests[0]["query"]["interim_results"] == "false"


async def test_deepgram_refused_handshake_is_an_authentication_error(server: SpeechServer) -> None:
    secret = "dg-wrong-key-9876543210"
    rec = DeepgramSTT(api_key=secret, base_url=server.url).start()
    with pytest.raises(AuthenticationError, match="Invalid credentials") as info:
        await rec.feed(tone(0.1, 16_000), 16_000)
    assert secret not in str(info.value)


@pytest.mark.parametrize(("close_with", "drop_after", "error", "words"), [
    ((1011, "NET-0000: internal server error"), None, ProviderError, "code 1011"),
    (None, 1, StreamInterruptedError, "dropped"),
])  # fmt: skip
async def test_deepgram_server_ending_the_socket_mid_utterance(
    server: SpeechServer, close_with: Any, drop_after: Any, error: type[Exception], words: str
) -> None:
    server.close_with, server.drop_after = close_with, drop_after
    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start()
    with pytest.raises(error, match=words):
        await feed_in_frames(rec, tone(1.0, 16_000), 16_000)
        await rec.finish()
    rec.close()
    await server.settled()


async def test_deepgram_abandoned_utterance_closes_the_socket(server: SpeechServer) -> None:
    rec = DeepgramSTT(api_key=API_KEY, base_url=server.url).start()
    await feed_in_frames(rec, tone(0.3, 16_000), 16_000)
    assert server.active == 1
    rec.close()  # a barge-in or a disposed graph
    await server.settled()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "rxkit-deepgram-reader"]


# -- ElevenLabs --------------------------------------------------------------------------


async def test_elevenlabs_speaks_one_sentence_per_socket(server: SpeechServer) -> None:
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=server.url, sample_rate=16_000, voice_settings={"stability": 0.5})
    chunks = [c async for c in tts.astream("Hello there, friend.")]
    assert b"".join(chunks) == word_audio(3, 16_000)
    assert len(chunks) == 3
    (req,) = server.requests
    assert req["voice_id"] == "21m00Tcm4TlvDq8ikWAM"
    assert req["query"] == {"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000"}
    assert req["messages"] == [
        {"text": " ", "voice_settings": {"stability": 0.5}},
        {"text": "Hello there, friend. ", "flush": True},
        {"text": ""},
    ]
    await server.settled()


async def test_elevenlabs_wrong_key_is_an_authentication_error(server: SpeechServer) -> None:
    secret = "xi-wrong-key-5555555555"
    tts = ElevenLabsTTS(api_key=secret, base_url=server.url)
    with pytest.raises(AuthenticationError, match="Invalid API key") as info:
        await tts.asynthesize("hello")
    assert secret not in str(info.value)


async def test_elevenlabs_close_with_an_error_code(server: SpeechServer) -> None:
    server.close_with = (1011, "internal error")
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=server.url)
    with pytest.raises(ProviderError, match="code 1011"):
        await tts.asynthesize("one two three")
    await server.settled()


async def test_elevenlabs_abandoned_stream_closes_the_socket(server: SpeechServer) -> None:
    server.hang = True
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=server.url)
    stream = tts.astream("one two three")
    assert await anext(stream) == word_audio(1, 24_000)
    await stream.aclose()
    await asyncio.wait_for(server.gone.wait(), 5)
    await server.settled()


def test_elevenlabs_refuses_a_rate_it_does_not_offer() -> None:
    with pytest.raises(ConfigError, match="sample_rate"):
        ElevenLabsTTS(api_key="k", sample_rate=11_025)


def test_word_seconds_is_what_the_tests_assume() -> None:
    assert len(word_audio(1, 24_000)) == 2 * int(WORD_SECONDS * 24_000)
