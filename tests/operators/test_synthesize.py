"""synthesize: sentences to audio frames with real espeak-ng, and cancellation with a gated engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.audio.tts import TTS, Pyttsx3TTS
from rxkit.elements import AudioFrame, EndOfTurn, Interrupt, Sentence, TextDelta
from rxkit.errors import BufferOverflowError, ConfigError
from rxkit.operators import sentence_chunker, synthesize
from rxkit.testing import ano_leaks


class GatedTTS(TTS):
    """A stand-in engine: each sentence waits for the test to open the gate, then gives 0.25 s of tone."""

    name = "gated"
    sample_rate = 16_000

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started: list[str] = []

    def _synthesize(self, text: str) -> bytes:
        self.started.append(text)
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        return (b"\x00\x10" * 4_000) if text != "boom" else b""


@pytest.fixture(scope="module")
def tts() -> Iterator[Pyttsx3TTS]:
    engine = Pyttsx3TTS()
    yield engine
    engine.close()


@pytest.fixture
def gated() -> Iterator[GatedTTS]:
    engine = GatedTTS()
    yield engine
    engine.gate.set()
    engine.close()


async def collect(source: Observable[Any], timeout: float = 30.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    out: list[Any] = []
    source.subscribe(out.append, done.set_exception, lambda: done.set_result(out), scheduler=AsyncIOScheduler(loop))
    return await asyncio.wait_for(done, timeout)


def audio_of(out: list[Any]) -> list[AudioFrame]:
    return [x for x in out if isinstance(x, AudioFrame)]


async def test_each_sentence_becomes_audio_frames_in_order(tts: Pyttsx3TTS) -> None:
    items = [Sentence("Hello there."), Sentence("This second sentence is a good deal longer."), EndOfTurn()]
    async with ano_leaks():
        out = await collect(reactivex.from_iterable(items).pipe(synthesize(tts, chunk_ms=50)))
    assert isinstance(out[-1], EndOfTurn)  # after all the audio before it
    frames = audio_of(out)
    assert len(frames) == len(out) - 1
    assert all(f.sample_rate == 22_050 and f.channels == 1 for f in frames)
    assert all(f.duration <= 0.05 + 1e-9 for f in frames)
    assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)
    total = sum(f.duration for f in frames)
    assert 2.0 < total < 6.0  # two sentences of speech
    assert abs(frames[-1].timestamp + frames[-1].duration - total) < 1e-6  # timestamps: seconds of speech so far


async def test_keep_text_puts_each_sentence_before_its_audio(tts: Pyttsx3TTS) -> None:
    items = [Sentence("One."), Sentence("Two.")]
    out = await collect(reactivex.from_iterable(items).pipe(synthesize(tts, keep_text=True)))
    kinds = ["S" if isinstance(x, Sentence) else "A" for x in out]
    first, second = kinds.index("S"), kinds.index("S", 1)
    assert first == 0 and second > 1 and set(kinds[1:second]) == {"A"} and set(kinds[second + 1 :]) == {"A"}
    assert [x.text for x in out if isinstance(x, Sentence)] == ["One.", "Two."]


async def test_first_audio_comes_before_the_model_finishes(tts: Pyttsx3TTS) -> None:
    loop = asyncio.get_running_loop()
    model: Subject[Any] = Subject()
    first_audio: asyncio.Future[float] = loop.create_future()
    out: list[Any] = []

    def on_next(x: Any) -> None:
        out.append(x)
        if isinstance(x, AudioFrame) and not first_audio.done():
            first_audio.set_result(loop.time())

    sub = model.pipe(sentence_chunker(), synthesize(tts)).subscribe(on_next, scheduler=AsyncIOScheduler(loop))
    for token in ["The ", "first ", "sentence", ".", " The", " second"]:
        model.on_next(TextDelta(token))
    await asyncio.wait_for(first_audio, 10)  # audio of sentence one while the model is mid-sentence two
    assert not any(isinstance(x, EndOfTurn) for x in out)
    model.on_next(TextDelta(" one."))
    model.on_next(EndOfTurn())
    model.on_completed()
    await asyncio.sleep(0.3)
    sub.dispose()
    assert isinstance(out[-1], EndOfTurn)
    assert sum(f.duration for f in audio_of(out)) > 1.0


async def test_interrupt_drops_queued_and_in_flight_sentences(gated: GatedTTS) -> None:
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    sub = subject.pipe(synthesize(gated)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
    for n in range(4):
        subject.on_next(Sentence(f"old {n}"))
    subject.on_next(EndOfTurn())
    await asyncio.sleep(0.05)
    assert gated.started == ["old 0"]  # one at a time: the rest wait in the stage
    subject.on_next(Interrupt("barge-in"))
    assert out == [Interrupt("barge-in")]  # at once, ahead of everything queued
    subject.on_next(Sentence("new"))
    gated.gate.set()  # the in-flight "old 0" finishes now: its audio must be dropped
    await asyncio.sleep(0.2)
    sub.dispose()
    assert gated.started == ["old 0", "new"]  # old 1..3 were never synthesized
    assert [type(x).__name__ for x in out] == ["Interrupt", "EndOfTurn", "AudioFrame", "AudioFrame", "AudioFrame"]


async def test_dispose_cancels_and_leaves_nothing_running(gated: GatedTTS) -> None:
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    gated.gate.set()
    assert gated.synthesize("warm up")  # the engine's worker thread runs before the leak check starts
    gated.gate.clear()
    gated.started.clear()
    async with ano_leaks():  # the stage's task ends; the engine's thread is the engine's (closed by the fixture)
        sub = subject.pipe(synthesize(gated)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
        subject.on_next(Sentence("one"))
        subject.on_next(Sentence("two"))
        await asyncio.sleep(0.05)
        sub.dispose()
        gated.gate.set()
        await asyncio.sleep(0.1)
    assert out == []
    assert gated.started == ["one"]


async def test_other_elements_pass_through_in_order(gated: GatedTTS) -> None:
    gated.gate.set()
    items = [TextDelta("a"), "marker", Sentence("b")]
    out = await collect(reactivex.from_iterable(items).pipe(synthesize(gated, chunk_ms=250)))
    assert [x if isinstance(x, str) else type(x).__name__ for x in out] == ["AudioFrame", "marker", "AudioFrame"]


async def test_too_many_waiting_sentences_is_an_overflow_error(gated: GatedTTS) -> None:
    with pytest.raises(BufferOverflowError, match="sentences waiting"):
        sentences = reactivex.from_iterable([Sentence(f"s{n}") for n in range(5)])
        await collect(sentences.pipe(synthesize(gated, max_pending=2)))


async def test_engine_failure_is_an_error(gated: GatedTTS) -> None:
    gated.gate.set()
    gated.close()
    with pytest.raises(Exception, match="closed"):
        await collect(reactivex.of(Sentence("late")).pipe(synthesize(gated)))


def test_bad_options_are_config_errors(gated: GatedTTS) -> None:
    with pytest.raises(ConfigError):
        synthesize(gated, chunk_ms=0)
