"""Cloud engines inside the voice stages: transcribe and synthesize over the loopback protocols."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    Interrupt,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    Transcript,
    Utterance,
    VadFrame,
)
from rxkit.operators import synthesize, transcribe
from rxkit.speech import DeepgramSTT, ElevenLabsTTS, OpenAISTT, OpenAITTS
from rxkit.testing import ano_leaks
from tests.speech.servers import API_KEY, SpeechServer, word_audio

GOFORWARD = (Path("/usr/share/pocketsphinx/test/data") / "goforward.raw").read_bytes()  # real speech, 16 kHz mono


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer(transcript="go forward ten meters") as s:
        yield s


async def collect(source: Observable[Any], timeout: float = 30.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    out: list[Any] = []
    source.subscribe(out.append, done.set_exception, lambda: done.set_result(out), scheduler=AsyncIOScheduler(loop))
    return await asyncio.wait_for(done, timeout)


async def test_deepgram_in_transcribe_streams_a_recorded_turn(server: SpeechServer) -> None:
    stt = DeepgramSTT(api_key=API_KEY, base_url=server.url)
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    done: asyncio.Future[None] = loop.create_future()
    async with ano_leaks():
        subject.pipe(transcribe(stt, partials=True)).subscribe(
            out.append, done.set_exception, lambda: done.set_result(None), scheduler=AsyncIOScheduler(loop)
        )
        subject.on_next(SpeechStarted(0.0))
        step = 640  # 20 ms
        for i in range(0, len(GOFORWARD), step):
            subject.on_next(VadFrame(GOFORWARD[i : i + step], 16_000, 1, i / 32_000, True))
            if i % (step * 5) == 0:
                await asyncio.sleep(0.01)
        subject.on_next(SpeechStopped(len(GOFORWARD) / 32_000))
        subject.on_next(Utterance(GOFORWARD, 16_000))
        subject.on_next(EndOfTurn())
        subject.on_completed()
        await asyncio.wait_for(done, 30)
    finals = [x for x in out if isinstance(x, Transcript) and x.final]
    partials = [x for x in out if isinstance(x, Transcript) and not x.final]
    assert [f.text for f in finals] == ["go forward ten meters"]
    assert partials and partials[0].text == "go"
    assert server.requests[0]["audio"] >= len(GOFORWARD) - 6_400  # the turn's audio went out (pre-roll aside)
    await server.settled()


async def test_openai_stt_in_transcribe_on_a_whole_utterance(server: SpeechServer) -> None:
    stt = OpenAISTT(api_key=API_KEY, base_url=server.url + "/v1")
    out = await collect(reactivex.from_iterable([Utterance(GOFORWARD, 16_000), EndOfTurn()]).pipe(transcribe(stt)))
    assert [type(x) for x in out] == [Transcript, EndOfTurn] and out[0].text == "go forward ten meters"
    assert server.requests[0]["wav"][3] == len(GOFORWARD) // 2


@pytest.mark.parametrize("engine", ["openai", "elevenlabs"])
async def test_streaming_tts_in_synthesize_gives_whole_frames_in_order(server: SpeechServer, engine: str) -> None:
    tts = (
        OpenAITTS(api_key=API_KEY, base_url=server.url + "/v1")
        if engine == "openai"
        else ElevenLabsTTS(api_key=API_KEY, base_url=server.url, sample_rate=24_000)
    )
    sentences = [TextDelta("Go forward ten meters."), TextDelta("Then stop."), EndOfTurn()]
    out = await collect(reactivex.from_iterable(sentences).pipe(synthesize(tts, chunk_ms=20, keep_text=True)))
    frames = [x for x in out if isinstance(x, AudioFrame)]
    assert all(f.sample_rate == 24_000 and len(f.pcm) == 960 for f in frames)  # 20 ms, whole frames across chunks
    audio = b"".join(f.pcm for f in frames)
    assert audio == word_audio(4, 24_000) + word_audio(2, 24_000)
    assert [type(x).__name__ for x in out if not isinstance(x, AudioFrame)] == ["TextDelta", "TextDelta", "EndOfTurn"]
    assert frames[-1].timestamp == pytest.approx(6 * 0.05 - 0.02)
    await server.settled()


async def test_interrupt_closes_the_sentence_being_streamed(server: SpeechServer) -> None:
    server.hang = True
    tts = ElevenLabsTTS(api_key=API_KEY, base_url=server.url)
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    async with ano_leaks():
        sub = subject.pipe(synthesize(tts, chunk_ms=20)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
        subject.on_next(TextDelta("one two three four five."))
        for _ in range(500):
            if any(isinstance(x, AudioFrame) for x in out):
                break
            await asyncio.sleep(0.01)
        subject.on_next(Interrupt())  # barge-in: the stalled sentence's socket must close now
        await asyncio.wait_for(server.gone.wait(), 5)
        sub.dispose()
        await server.settled()
    assert any(isinstance(x, Interrupt) for x in out)
