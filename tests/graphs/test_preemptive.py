"""Preemptive replies: the assistant answers at a tentative end, holds the reply, and lets it out or drops it.

The state machine on virtual time with a scripted text graph; the tool and store holds with the real text
graph (mock provider); the whole voice graph on real recorded speech.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reactivex import Observable, abc
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.audio.wav import read_wav, write_wav
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    Interrupt,
    MessageElement,
    ReplyStarted,
    Sentence,
    SpeechResumed,
    SpeechStopped,
    TentativeEnd,
    TextDelta,
    Transcript,
)
from rxkit.floor import Floor
from rxkit.graphs import text_graph, transcript_and_reply, voice_graph
from rxkit.graphs._preemptive import MAX_HELD, HeldStore, Preemption
from rxkit.graphs._voice_stages import assistant
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.scheduling import from_async_iterable
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import (
    EventBus,
    FinalTranscript,
    FirstModelToken,
    PreemptiveReply,
    UserSpeechEnded,
    VoiceTurnLatency,
)
from rxkit.testing import ano_leaks, run_virtual
from rxkit.types import ToolCall


class ScriptedText:
    """A text graph on virtual time: each question is answered 'A: <question>.' in two parts, 0.3 s and 0.4 s
    after it came; notes when each reply was subscribed to and disposed of."""

    def __init__(self, sch: TestScheduler, parts: int = 2) -> None:
        self.sch, self.parts = sch, parts
        self.asked: list[tuple[float, str]] = []
        self.disposed: list[float] = []

    def __call__(self, source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            def on_message(x: Any) -> None:
                assert isinstance(x, MessageElement)
                text = x.message.text
                self.asked.append((round(self.sch.clock, 6), text))
                for i in range(self.parts):
                    self.sch.schedule_relative(0.3 + 0.1 * i, lambda *_, i=i: observer.on_next(TextDelta(f"A{i} ")))
                self.sch.schedule_relative(0.3 + 0.1 * self.parts, lambda *_: (observer.on_next(EndOfTurn()),
                                                                                observer.on_completed()))  # fmt: skip

            sub = source.subscribe(on_message, scheduler=scheduler)

            def dispose() -> None:
                self.disposed.append(round(self.sch.clock, 6))
                sub.dispose()

            return dispose

        return Observable(subscribe)


def stage(sch: TestScheduler, **kwargs: Any) -> tuple[Any, ScriptedText, Floor, list[Any]]:
    bus = EventBus()
    events: list[Any] = []
    bus.subscribe(events.append, PreemptiveReply)
    floor = Floor(bus)
    text = ScriptedText(sch, **kwargs)
    return assistant(text, floor, preemption=Preemption()), text, floor, events


def replies(run: Any) -> list[tuple[float, str]]:
    """(when, what) of each ReplyStarted and TextDelta that came out."""
    return [(t, f"{type(v).__name__}:{getattr(v, 'text', '')}") for t, v in zip(run.times, run.values, strict=True)
            if isinstance(v, (ReplyStarted, TextDelta))]  # fmt: skip


def test_a_confirmed_tentative_end_lets_the_held_reply_out_at_once_and_asks_the_model_once() -> None:
    sch = TestScheduler()
    st, text, floor, events = stage(sch)
    run = run_virtual(st, [
        (1.0, TentativeEnd(0.8, "hello there")), (1.35, SpeechStopped(0.8, 1.0)), (1.36, Transcript("hello there")),
    ], complete_at=3.0, scheduler=sch)  # fmt: skip
    assert text.asked == [(1.0, "hello there")]  # at the tentative end, not at the final transcript
    # Held until 1.36: ReplyStarted and the first part (made at 1.30) go out then, the rest as it comes.
    assert replies(run) == [(1.36, "ReplyStarted:hello there"), (1.36, "TextDelta:A0 "), (1.4, "TextDelta:A1 ")]
    assert [type(v).__name__ for v in run.values][:2] == ["SpeechStopped", "Transcript"]  # the TentativeEnd ends here
    assert run.values[-1] == EndOfTurn() and run.completed_at == 3.0
    assert [(e.used, e.reason) for e in events] == [(True, "confirmed")] and floor.turn == 1
    assert floor.in_flight and text.disposed == [1.5]  # busy until its EndOfTurn is played; the reply ended


def test_speech_resumed_drops_the_held_reply_unheard_and_the_real_end_is_answered_afresh() -> None:
    sch = TestScheduler()
    st, text, floor, events = stage(sch)
    run = run_virtual(st, [
        (1.0, TentativeEnd(0.8, "what is")), (1.2, SpeechResumed(1.2)),
        (2.0, TentativeEnd(1.8, "what is the time")), (2.1, SpeechStopped(1.8, 1.5)),
        (2.11, Transcript("what is the time")),
    ], complete_at=4.0, scheduler=sch)  # fmt: skip
    assert text.asked == [(1.0, "what is"), (2.0, "what is the time")]
    assert text.disposed[0] == 1.2  # the model call was cancelled when the user spoke on
    # Nothing of the first reply came out (its part was due at 1.3); the second went out when confirmed.
    assert replies(run) == [(2.11, "ReplyStarted:what is the time"), (2.3, "TextDelta:A0 "), (2.4, "TextDelta:A1 ")]
    assert [(e.used, e.reason) for e in events] == [(False, "speech_resumed"), (True, "confirmed")]
    assert floor.turn == 1 and floor.wasted == 0  # one turn; its wasted count went to its latency record


def test_a_changed_final_transcript_drops_the_held_reply_and_starts_a_fresh_one() -> None:
    sch = TestScheduler()
    st, text, floor, events = stage(sch)
    run = run_virtual(st, [
        (1.0, TentativeEnd(0.8, "book a")), (1.2, SpeechStopped(0.8, 1.0)), (1.25, Transcript("book a room")),
    ], complete_at=4.0, scheduler=sch)  # fmt: skip
    assert text.asked == [(1.0, "book a"), (1.25, "book a room")] and text.disposed[0] == 1.25
    assert replies(run) == [(1.25, "ReplyStarted:book a room"), (1.55, "TextDelta:A0 "), (1.65, "TextDelta:A1 ")]
    assert [(e.used, e.reason) for e in events] == [(False, "transcript_changed")] and floor.turn == 1


@pytest.mark.parametrize(
    ("ending", "reason"),
    [((1.2, SpeechStopped(0.8, 0.2, discarded=True)), "discarded"), ((1.2, Interrupt("user")), "interrupted")],
)
def test_a_discarded_turn_or_an_interrupt_drops_the_held_reply(ending: tuple[float, Any], reason: str) -> None:
    sch = TestScheduler()
    st, text, floor, events = stage(sch)
    run = run_virtual(st, [(1.0, TentativeEnd(0.8, "um")), ending], complete_at=3.0, scheduler=sch)
    assert text.disposed == [1.2] and replies(run) == [] and floor.turn == 0 and not floor.busy
    assert [(e.used, e.reason) for e in events] == [(False, reason)]
    assert run.completed_at == 3.0 and run.subscription == (0.0, 3.0)


def test_the_end_of_the_input_drops_a_held_reply_and_completes() -> None:
    sch = TestScheduler()
    st, text, _, events = stage(sch)
    run = run_virtual(st, [(1.0, TentativeEnd(0.8, "hello"))], complete_at=1.1, scheduler=sch)
    assert text.disposed == [1.1] and replies(run) == [] and run.completed_at == 1.1
    assert [(e.used, e.reason) for e in events] == [(False, "ended")]


def test_no_preemptive_reply_while_the_assistant_is_busy_or_for_a_blank_transcript() -> None:
    sch = TestScheduler()
    st, text, _, events = stage(sch)
    run = run_virtual(st, [
        (0.5, Transcript("first")), (0.6, TentativeEnd(0.55, "second")),  # busy with "first"
        (0.7, TentativeEnd(0.65, "  ")),
    ], complete_at=3.0, scheduler=sch)  # fmt: skip
    assert text.asked == [(0.5, "first")] and events == []
    assert [v.text for v in run.values if isinstance(v, ReplyStarted)] == ["first"]


def test_a_reply_that_outgrows_the_hold_is_dropped_and_answered_afresh_when_confirmed() -> None:
    sch = TestScheduler()
    st, text, _, events = stage(sch, parts=MAX_HELD + 5)
    run = run_virtual(st, [
        (1.0, TentativeEnd(0.8, "tell me everything")), (3000.0, SpeechStopped(0.8, 1.0)),
        (3000.0, Transcript("tell me everything")),
    ], complete_at=9000.0, until=10_000.0, scheduler=sch)  # fmt: skip
    assert [r for _, r in text.asked] == ["tell me everything"] * 2
    assert [(e.used, e.reason) for e in events] == [(False, "overflow")]
    started = [t for t, v in zip(run.times, run.values, strict=True) if isinstance(v, ReplyStarted)]
    assert started == [3000.0]  # nothing of the dropped one came out
    assert sum(isinstance(v, TextDelta) for v in run.values) == MAX_HELD + 5


def test_without_preemption_a_tentative_end_only_passes_through() -> None:
    sch = TestScheduler()
    text = ScriptedText(sch)
    run = run_virtual(assistant(text, Floor()), [(1.0, TentativeEnd(0.8, "hi")), (1.2, SpeechResumed(1.2))],
                      complete_at=2.0, scheduler=sch)  # fmt: skip
    assert text.asked == [] and [type(v).__name__ for v in run.values] == ["TentativeEnd", "SpeechResumed"]


# -- with the real text graph: the tool loop and the store wait for the confirmation ---------------------------


async def until(condition: Any, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def voice_turns(provider: MockProvider, tools: list[Any]) -> tuple[Any, MemoryStore]:
    store, preemption = MemoryStore(), Preemption()
    text = text_graph(provider, store=HeldStore(store, preemption), hold_tools=preemption.wait, tools=tools)
    return assistant(text, Floor(), store=store, preemption=preemption), store


def looking_up(answer: str) -> tuple[Any, MemoryStore, MockProvider, list[str]]:
    """The assistant on a model that first calls a lookup tool for John, then says ``answer``: (the stage, its
    store, the model, the names the tool looked up)."""
    calls: list[str] = []

    def lookup(name: str) -> str:
        """Look a character up in the book."""
        calls.append(name)
        return "Elinor's half-brother."

    call = ToolCall(id="c1", name="lookup", arguments='{"name": "John"}')
    provider = MockProvider([MockResponse(tool_calls=[call]), answer])
    st, store = voice_turns(provider, [lookup])
    return st, store, provider, calls


async def test_a_held_reply_runs_no_tool_and_saves_nothing_until_confirmed() -> None:
    st, store, provider, calls = looking_up("He is her half-brother.")
    feed: Subject[Any] = Subject()
    out: list[Any] = []
    async with ano_leaks():
        sub = st(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
        feed.on_next(TentativeEnd(1.0, "who is john"))
        await until(lambda: provider.requests, "the model was not asked at the tentative end")
        await asyncio.sleep(0.3)  # the model asked for the tool long ago
        assert calls == [] and len(provider.requests) == 1 and await store.load("default") == []
        assert out == []  # nothing of the reply came out (and the TentativeEnd ends in this stage)
        feed.on_next(SpeechStopped(1.0, 1.0))
        feed.on_next(Transcript("who is john"))
        await until(lambda: any(isinstance(x, EndOfTurn) for x in out), "no answer once confirmed")
        sub.dispose()
    assert calls == ["John"]
    history = await store.load("default")
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[0].text == "who is john" and history[-1].text == "He is her half-brother."


async def test_a_dropped_reply_runs_no_tool_saves_nothing_and_the_next_turn_sees_a_clean_history() -> None:
    st, store, provider, calls = looking_up("Fine, thanks.")
    feed: Subject[Any] = Subject()
    out: list[Any] = []
    async with ano_leaks():
        sub = st(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
        feed.on_next(TentativeEnd(1.0, "who is"))
        await until(lambda: provider.requests, "the model was not asked at the tentative end")
        await asyncio.sleep(0.2)
        feed.on_next(SpeechResumed(1.5))  # the user goes on: the held reply is dropped, its tool never runs
        await asyncio.sleep(0.2)
        assert calls == [] and await store.load("default") == [] and len(provider.requests) == 1
        feed.on_next(SpeechStopped(2.0, 1.5))
        feed.on_next(Transcript("how are you"))
        await until(lambda: any(isinstance(x, EndOfTurn) for x in out), "no answer to the real turn")
        sub.dispose()
    assert calls == [] and [x.text for x in out if isinstance(x, ReplyStarted)] == ["how are you"]
    assert [(m.role, m.text) for m in provider.requests[-1].messages] == [("user", "how are you")]
    assert [(m.role, m.text) for m in await store.load("default")] == [
        ("user", "how are you"), ("assistant", "Fine, thanks.")
    ]  # fmt: skip


# -- the voice graph on real recorded speech, paced as a microphone would give it ---------------------------

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"


def spoken(path: Path, *parts: str | float) -> Path:
    """LibriVox sentences (keys) and seconds of a quiet noise floor (floats), one after the other."""
    noise = np.random.default_rng(14)
    pieces = [
        np.frombuffer(read_wav(LIBRIVOX.format(p)).pcm, dtype=np.int16) if isinstance(p, str)
        else noise.normal(0, 33, int(16000 * p)).astype(np.int16)
        for p in parts
    ]  # fmt: skip
    write_wav(path, AudioFrame(np.concatenate(pieces).tobytes(), 16000, 1))
    return path


async def converse(path: Path, out: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS]) -> tuple[list[Any], Any]:
    """The voice graph on ``path`` (read fast), a turn ending at 1.5 s of silence (a pause is a tentative end at
    200 ms), answered by a mock model that says back what it heard. (elements out, (the bus, the store))"""
    bus = EventBus()
    store = MemoryStore()
    stt, tts = engines
    async with ano_leaks():
        graph = voice_graph(
            MockProvider(bus=bus), source=path, sink=out, stt=stt, tts=tts, bus=bus,
            end_of_turn="silence", stop_ms=1500, vad_stop_ms=200, store=store, preemptive=True,
        )  # fmt: skip
        elements = await graph.arun()
        graph.close()
    return elements, (bus, store)


async def test_the_reply_starts_before_the_turn_is_confirmed_and_is_saved_once(
    tmp_path: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS]
) -> None:
    # The sentence and 800 ms of silence; then the input waits until the model is asked, and ends, which ends
    # the turn: the model can only have been asked before the verdict, at the tentative end, whatever the load.
    audio = read_wav(spoken(tmp_path / "q.wav", 0.3, "0880", 0.8))
    step = 640  # 20 ms
    bus, store = EventBus(), MemoryStore()
    provider = MockProvider(bus=bus)
    asked_at: list[float] = []

    async def microphone() -> AsyncIterator[AudioFrame]:
        for i in range(0, len(audio.pcm), step):
            yield AudioFrame(audio.pcm[i : i + step], 16000, 1, i / 32000)
        await until(lambda: provider.requests, "the model was not asked at the tentative end", 60)
        asked_at.append(time.monotonic())

    stt, tts = engines
    async with ano_leaks():
        graph = voice_graph(
            provider, source=from_async_iterable(microphone), sink=tmp_path / "r.wav", stt=stt, tts=tts, bus=bus,
            end_of_turn="silence", stop_ms=10_000, vad_stop_ms=200, store=store, preemptive=True,
        )  # fmt: skip
        out = await graph.arun()
        graph.close()
    ((said, answered),) = transcript_and_reply(out)
    assert len(set(said.split()) & {"he", "was", "not", "an", "ill", "disposed", "young", "man"}) >= 4, said
    assert answered == said  # the mock says back what it heard
    assert [e.reason for e in out if isinstance(e, SpeechStopped)] == ["end_of_stream"]
    (verdict,) = bus.events(UserSpeechEnded)
    assert verdict.time > asked_at[0]
    assert len(provider.requests) == 1 and provider.requests[0].messages[-1].text == said  # the same reply, used
    (used,) = bus.events(PreemptiveReply)
    assert used.used and used.text == said
    (summary,) = bus.events(VoiceTurnLatency)
    assert summary.preemptive and summary.preemptive_wasted == 0
    assert summary.model_ttft_s == 0.0  # the first token was in before the transcript was final
    assert 0 <= summary.framework_s < summary.total_s
    # Exactly one user turn and one assistant turn saved, and the reply spoken once.
    assert [(m.role, m.text) for m in await store.load("default")] == [("user", said), ("assistant", said)]
    assert [x.text for x in out if isinstance(x, Sentence)] == [said]


async def test_a_pause_mid_turn_drops_the_preemptive_reply_unheard_and_the_whole_turn_is_answered(
    tmp_path: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS]
) -> None:
    # Two sentences with a 600 ms pause between them: one turn (stop_ms 1500), but a tentative end in the pause.
    path = spoken(tmp_path / "q.wav", 0.3, "0880", 0.6, "0930", 2.5)
    out, (bus, store) = await converse(path, tmp_path / "r.wav", engines)
    ((said, answered),) = transcript_and_reply(out)  # one turn
    assert {"amiable", "himself"} & set(said.split()) and {"disposed", "young", "man"} & set(said.split()), said
    events = bus.events(PreemptiveReply)
    dropped, used = events[:-1], events[-1]
    assert dropped and all(not e.used and e.reason == "speech_resumed" for e in dropped)
    assert not {"amiable", "himself"} & set(dropped[0].text.split())  # it answered the first sentence alone
    assert used.used and used.text == said
    # What was dropped was never heard: one reply, to the whole turn, and only it in the reply audio.
    assert answered == said and [x.text for x in out if isinstance(x, Sentence)] == [said]
    assert sum(isinstance(x, ReplyStarted) for x in out) == 1
    reply = read_wav(tmp_path / "r.wav")
    expected = len(engines[1].synthesize(said))
    assert len(reply.pcm) == pytest.approx(expected, rel=0.01)
    (summary,) = bus.events(VoiceTurnLatency)
    assert summary.preemptive and summary.preemptive_wasted == len(dropped)
    assert [(m.role, m.text) for m in await store.load("default")] == [("user", said), ("assistant", said)]


def test_a_preemptive_turns_latency_counts_only_what_was_left_of_the_model_after_the_final_transcript() -> None:
    bus = EventBus()
    floor = Floor(bus)
    floor.preemptive_over("what", False, "speech_resumed", 0.3)  # a dropped one, before this turn's end
    t0 = time.monotonic()
    floor.heard(10.0, t0 - 0.5)  # the speech ended at audio time 10.0; its frame arrived 0.5 s ago
    floor.speech_stopped(10.0)
    turn = floor.transcribed("what time is it")
    transcript = bus.events(FinalTranscript)[0].time
    # Held meanwhile: asked 0.4 s and the first token 0.1 s before the final transcript.
    floor.preemptive_used(turn, {"message_in": transcript - 0.4, "first_token": transcript - 0.1})
    floor.mark(turn, "first_sentence", transcript + 0.05)
    floor.mark(turn, "first_tts_audio", transcript + 0.07)
    floor.audio_out(turn, transcript + 0.07, device=False)
    (summary,) = bus.events(VoiceTurnLatency)
    assert summary.preemptive and summary.preemptive_wasted == 1 and floor.wasted == 0
    assert summary.model_ttft_s == 0.0  # all of it was hidden behind the verdict
    assert summary.model_first_sentence_s == pytest.approx(0.05) and summary.tts_first_chunk_s == pytest.approx(0.02)
    parts = (summary.audio_in_s, summary.vad_hangover_s, summary.stt_s, summary.model_ttft_s,
             summary.model_first_sentence_s, summary.tts_first_chunk_s, summary.audio_out_s,
             summary.framework_s)  # fmt: skip
    assert sum(parts) == pytest.approx(summary.total_s) and summary.framework_s >= 0
    first_token = bus.events(FirstModelToken)[0]
    assert first_token.time == pytest.approx(transcript - 0.1)  # published when let out, stamped when it came
    assert [(e.used, e.reason) for e in bus.events(PreemptiveReply)] == [(False, "speech_resumed")]


def test_disposing_while_a_reply_is_held_cancels_it_and_the_next_run_starts_clean() -> None:
    sch = TestScheduler()
    preemption = Preemption()
    text = ScriptedText(sch)
    st = assistant(text, Floor(), preemption=preemption)
    run = run_virtual(st, [(1.0, TentativeEnd(0.8, "hello"))], dispose_at=1.1, scheduler=sch)
    assert text.disposed == [1.1] and replies(run) == [] and preemption.held is None
    text.sch = sch = TestScheduler()  # a second run of the same stage
    run = run_virtual(st, [(2.0, TentativeEnd(1.8, "again")), (2.1, SpeechStopped(1.8, 1.0)),
                           (2.1, Transcript("again"))], complete_at=3.0, scheduler=sch)  # fmt: skip
    assert [r for _, r in replies(run)] == ["ReplyStarted:again", "TextDelta:A0 ", "TextDelta:A1 "]
