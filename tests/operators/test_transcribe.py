"""transcribe: real pocketsphinx on recorded speech, whole turns and streamed frames."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.elements import (
    AudioFrame,
    EndOfStream,
    EndOfTurn,
    Interrupt,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TentativeEnd,
    TextDelta,
    Transcript,
    Utterance,
    VadFrame,
)
from rxkit.errors import AudioError, BufferOverflowError, ConfigError
from rxkit.operators import transcribe, turn_detector, vad
from rxkit.testing import ano_leaks

GOFORWARD = (Path("/usr/share/pocketsphinx/test/data") / "goforward.raw").read_bytes()  # 16 kHz mono
WORDS = {"go", "forward", "ten", "meters"}
SILENCE = b"\x00\x00" * 8_000  # 0.5 s at 16 kHz


@pytest.fixture(scope="module")
def stt() -> Iterator[PocketSphinxSTT]:
    engine = PocketSphinxSTT()
    yield engine
    engine.close()


async def collect(source: Observable[Any], timeout: float = 60.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    out: list[Any] = []
    source.subscribe(out.append, done.set_exception, lambda: done.set_result(out), scheduler=AsyncIOScheduler(loop))
    return await asyncio.wait_for(done, timeout)


def frames(pcm: bytes, start: float = 0.0, ms: int = 20, speech: bool = True) -> list[VadFrame]:
    step = 32 * ms
    return [VadFrame(pcm[i : i + step], 16_000, 1, start + i / 32_000, speech) for i in range(0, len(pcm), step)]


def heard(transcript: Transcript) -> set[str]:
    return set(transcript.text.split()) & WORDS


async def test_a_whole_utterance_gives_one_final_transcript(stt: PocketSphinxSTT) -> None:
    items = [Utterance(GOFORWARD, 16_000), EndOfTurn()]
    out = await collect(reactivex.from_iterable(items).pipe(transcribe(stt)))
    assert [type(x) for x in out] == [Transcript, EndOfTurn]
    assert out[0].final and len(heard(out[0])) >= 3, out[0]


async def test_streamed_turn_gives_partials_then_the_final_and_skips_the_repeat(stt: PocketSphinxSTT) -> None:
    loop = asyncio.get_running_loop()
    speech_start = 0.5
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    done: asyncio.Future[None] = loop.create_future()
    async with ano_leaks():
        subject.pipe(transcribe(stt, partials=True)).subscribe(
            out.append, done.set_exception, lambda: done.set_result(None), scheduler=AsyncIOScheduler(loop)
        )
        for f in frames(SILENCE, 0.0, speech=False):  # before the turn: only its last 300 ms are used
            subject.on_next(f)
        subject.on_next(SpeechStarted(speech_start))
        speech = frames(GOFORWARD, speech_start)
        for i in range(0, len(speech), 5):  # 100 ms at a time, faster than real time
            for f in speech[i : i + 5]:
                subject.on_next(f)
            await asyncio.sleep(0.04)
        subject.on_next(SpeechStopped(speech_start + len(GOFORWARD) / 32_000))
        subject.on_next(Utterance(SILENCE + GOFORWARD, 16_000))  # the turn detector's copy of the same turn
        subject.on_next(EndOfTurn())
        subject.on_completed()
        await asyncio.wait_for(done, 60)
    kinds = [type(x).__name__ for x in out]
    assert kinds[0] == "SpeechStarted"
    stop = kinds.index("SpeechStopped")
    partials = out[1:stop]
    assert len(partials) >= 3 and all(isinstance(p, Transcript) and not p.final for p in partials)
    assert partials[0].text.split()[0].startswith("go")  # words came while the user was still speaking (partials vary)
    assert kinds[stop + 1 :] == ["Transcript", "EndOfTurn"]  # one final: the Utterance was not decoded again
    final = out[stop + 1]
    assert final.final and len(heard(final)) >= 3, final


@pytest.mark.parametrize("stream_frames", [True, False])
async def test_behind_the_real_vad_and_turn_detector(stt: PocketSphinxSTT, stream_frames: bool) -> None:
    # mic-like 20 ms blocks: silence, the recording, silence; vad() tags them, turn_detector() finds the turn
    audio = SILENCE + GOFORWARD + SILENCE * 3
    blocks = [AudioFrame(audio[i : i + 640], 16_000, 1, i / 32_000) for i in range(0, len(audio), 640)]
    graph = reactivex.from_iterable(blocks).pipe(
        vad(), turn_detector(frames=stream_frames), transcribe(stt, partials=stream_frames)
    )
    out = await collect(graph)
    kinds = [type(x).__name__ for x in out]
    assert kinds[0] == "SpeechStarted" and "SpeechStopped" in kinds
    finals = [x for x in out if isinstance(x, Transcript) and x.final]
    assert len(finals) == 1 and len(heard(finals[0])) >= 3, out  # streamed or not: one final per turn
    assert kinds.index("SpeechStopped") < out.index(finals[0])
    assert any(isinstance(x, Transcript) and not x.final for x in out) == stream_frames


async def test_frames_without_turn_markers_end_at_end_of_turn(stt: PocketSphinxSTT) -> None:
    items = [*(AudioFrame(f.pcm, 16_000) for f in frames(GOFORWARD)), EndOfTurn(), EndOfStream()]
    out = await collect(reactivex.from_iterable(items).pipe(transcribe(stt)))
    assert [type(x) for x in out] == [Transcript, EndOfTurn, EndOfStream]
    assert len(heard(out[0])) >= 3


async def test_audio_at_completion_is_transcribed_before_completing(stt: PocketSphinxSTT) -> None:
    out = await collect(reactivex.from_iterable(frames(GOFORWARD, ms=30)).pipe(transcribe(stt)))
    assert len(out) == 1 and len(heard(out[0])) >= 3


async def test_raw_bytes_are_an_utterance_at_the_given_rate(stt: PocketSphinxSTT) -> None:
    from rxkit.audio.convert import resample

    at8k = resample(GOFORWARD, 16_000, 8_000).tobytes()
    out = await collect(reactivex.of(at8k).pipe(transcribe(stt, sample_rate=8_000)))
    assert len(out) == 1 and len(heard(out[0])) >= 2  # telephone-band audio: fewer words survive


async def test_silence_and_discarded_turns_give_no_transcript(stt: PocketSphinxSTT) -> None:
    items = [Utterance(SILENCE, 16_000), SpeechStarted(0.0), *frames(GOFORWARD[:6400]), SpeechStopped(discarded=True)]
    out = await collect(reactivex.from_iterable(items).pipe(transcribe(stt)))
    assert [type(x).__name__ for x in out] == ["SpeechStarted", "SpeechStopped"]
    kept = await collect(reactivex.of(Utterance(SILENCE, 16_000)).pipe(transcribe(stt, drop_empty=False)))
    assert kept == [Transcript("", final=True)]


async def test_interrupt_passes_ahead_of_queued_work_and_the_rest_keeps_order(stt: PocketSphinxSTT) -> None:
    items = [TextDelta("before"), Utterance(GOFORWARD, 16_000), Interrupt("barge-in"), TextDelta("after")]
    out = await collect(reactivex.from_iterable(items).pipe(transcribe(stt)))
    # the Interrupt is urgent: it goes out at once, ahead of everything still queued
    assert [type(x).__name__ for x in out] == ["Interrupt", "TextDelta", "Transcript", "TextDelta"]
    assert out[1].text == "before" and out[3].text == "after"


async def test_dispose_mid_utterance_cancels_and_leaves_the_engine_usable(stt: PocketSphinxSTT) -> None:
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    async with ano_leaks():
        sub = subject.pipe(transcribe(stt, partials=True)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
        for f in frames(GOFORWARD[: len(GOFORWARD) // 2]):
            subject.on_next(f)
        await asyncio.sleep(0.3)  # let some decoding happen
        sub.dispose()
        count = len(out)
        await asyncio.sleep(0.2)
        assert len(out) == count  # nothing after dispose
        assert not any(isinstance(x, Transcript) and x.final for x in out)
    # the abandoned utterance was closed on the worker: the single decoder is free again
    assert len(set((await stt.atranscribe(GOFORWARD, 16_000)).split()) & WORDS) >= 3


async def test_engine_failure_is_a_typed_error() -> None:
    closed = PocketSphinxSTT()
    closed.close()
    with pytest.raises(AudioError, match="closed"):
        await collect(reactivex.of(Utterance(GOFORWARD, 16_000)).pipe(transcribe(closed)))


async def test_too_much_waiting_audio_is_an_overflow_error(stt: PocketSphinxSTT) -> None:
    with pytest.raises(BufferOverflowError, match="audio waiting"):
        await collect(reactivex.from_iterable(frames(GOFORWARD)).pipe(transcribe(stt, max_pending_s=0.5)))


def test_bad_options_are_config_errors(stt: PocketSphinxSTT) -> None:
    with pytest.raises(ConfigError):
        transcribe(stt, chunk_ms=1)


async def streamed(stt: PocketSphinxSTT, items: list[Any], partials: bool = False) -> list[Any]:
    """``items`` into transcribe (frames 100 ms at a time, faster than real time), and what came out."""
    loop = asyncio.get_running_loop()
    subject: Subject[Any] = Subject()
    out: list[Any] = []
    done: asyncio.Future[None] = loop.create_future()
    subject.pipe(transcribe(stt, partials=partials)).subscribe(
        out.append, done.set_exception, lambda: done.set_result(None), scheduler=AsyncIOScheduler(loop)
    )
    for i, x in enumerate(items):
        subject.on_next(x)
        if i % 5 == 4:
            await asyncio.sleep(0.02)
    subject.on_completed()
    await asyncio.wait_for(done, 60)
    return out


async def test_a_tentative_end_carries_the_transcript_so_far_which_is_final_when_the_turn_ends(
    stt: PocketSphinxSTT,
) -> None:
    end = len(GOFORWARD) / 32_000
    async with ano_leaks():
        out = await streamed(stt, [
            SpeechStarted(0.0), *frames(GOFORWARD), TentativeEnd(end), *frames(SILENCE, end, speech=False),
            SpeechStopped(end), Utterance(GOFORWARD + SILENCE, 16_000), EndOfTurn(),
        ])  # fmt: skip
    assert [type(x).__name__ for x in out] == [
        "SpeechStarted", "TentativeEnd", "SpeechStopped", "Transcript", "EndOfTurn"
    ]  # fmt: skip
    tentative, final = out[1], out[3]
    assert tentative.timestamp == end and len(heard(Transcript(tentative.text))) >= 3, tentative
    assert final.final and final.text == tentative.text  # nothing decoded again: the Utterance was skipped too


async def test_speech_resumed_after_a_tentative_end_gives_the_final_transcript_of_the_whole_turn(
    stt: PocketSphinxSTT,
) -> None:
    half = 16_000 * 2  # "go forward" | "ten meters"
    first, rest = GOFORWARD[:half], GOFORWARD[half:]
    t1, t2 = half / 32_000, half / 32_000 + 0.5
    async with ano_leaks():
        out = await streamed(stt, [
            SpeechStarted(0.0), *frames(first), TentativeEnd(t1), *frames(SILENCE, t1, speech=False),
            SpeechResumed(t2), *frames(rest, t2), SpeechStopped(t2 + len(rest) / 32_000), EndOfTurn(),
        ])  # fmt: skip
    assert [type(x).__name__ for x in out] == [
        "SpeechStarted", "TentativeEnd", "SpeechResumed", "SpeechStopped", "Transcript", "EndOfTurn"
    ]  # fmt: skip
    so_far, final = set(out[1].text.split()), set(out[4].text.split())
    assert "meters" not in so_far and so_far & {"go", "forward"}, out[1]
    assert len(final & WORDS) >= 3 and "meters" in final, out[4]  # the words before the pause are in it again


async def test_recognising_the_turn_again_after_speech_resumed_sends_no_partial_twice(stt: PocketSphinxSTT) -> None:
    half = 16_000 * 2
    first, rest = GOFORWARD[:half], GOFORWARD[half:]
    t1, t2 = half / 32_000, half / 32_000 + 0.5
    out = await streamed(stt, [
        SpeechStarted(0.0), *frames(first), TentativeEnd(t1), *frames(SILENCE, t1, speech=False),
        SpeechResumed(t2), *frames(rest, t2), SpeechStopped(t2 + len(rest) / 32_000),
    ], partials=True)  # fmt: skip
    partials = [x.text for x in out if isinstance(x, Transcript) and not x.final]
    resumed = next(i for i, x in enumerate(out) if isinstance(x, SpeechResumed))
    assert any(isinstance(x, Transcript) for x in out[:resumed]), partials  # partials came before the pause
    assert len(partials) == len(set(partials)), partials  # none of the first half's partials again
