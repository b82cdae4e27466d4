"""Voice mode: the turn-taking stages on virtual time, the graph on files, and live on PulseAudio's virtual devices.

The live tests play real recorded speech (Debian's pocketsphinx-testdata)
into the virtual microphone and check what the virtual speaker's monitor
heard. No assertion depends on wall-clock timing: waits are generous and
only bound how long a failure takes to show.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
import reactivex.operators as ops
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    PlaybackFinished,
    PlaybackStarted,
    ReplyStarted,
    Sentence,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    Transcript,
)
from rxkit.errors import ConfigError, ProviderError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage, StageKind
from rxkit.graphs import VoiceAssistant, VoiceGraph, text_graph, transcript_and_reply, voice_graph
from rxkit.graphs._voice_stages import assistant
from rxkit.operators import BargeIn, barge_in, duplex_gate, playout
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import (
    EventBus,
    FinalTranscript,
    FirstAudioOut,
    FirstModelToken,
    FirstTTSAudio,
    ProviderFirstToken,
    UserSpeechEnded,
    VoiceTurnEvent,
    VoiceTurnLatency,
)
from rxkit.testing import ano_leaks, run_virtual
from tests.audio.pulse import PulseAudio, nonsilent_seconds, os_threads, threads_back_to, wait_for

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
TRANSCRIPTS = {  # "<s> words </s> (sense_and_sensibility_01_austen_64kb-0870)" -> {"0870": "words"}
    line.split()[-1].strip("()")[-4:]: " ".join(line.split()[1:-2])
    for line in (SPEECH / "transcription").read_text().splitlines()
    if line.strip()
}


def recording(key: str) -> Path:
    """A LibriVox sentence (16 kHz mono WAV); its words are ``TRANSCRIPTS[key]``."""
    path = SPEECH / f"sense_and_sensibility_01_austen_64kb-{key}.wav"
    if not path.is_file():
        pytest.fail("pocketsphinx-testdata is not installed: run `bash .ci/setup`")
    return path


def shared_words(reference: str, heard: str) -> float:
    ref = set(reference.split())
    return len(ref & set(heard.split())) / len(ref)


@pytest.fixture(scope="module")
def stt() -> Iterator[PocketSphinxSTT]:
    engine = PocketSphinxSTT()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tts() -> Iterator[Pyttsx3TTS]:
    engine = Pyttsx3TTS()
    yield engine
    engine.close()


@pytest.fixture(scope="module", autouse=True)
def warm_turn_model() -> None:
    """The graphs load Smart Turn by default, and onnxruntime starts a thread of its own when it is first
    imported, for the life of the process: load it before a test counts the process's threads."""
    from rxkit.audio.turn_model import SmartTurn

    SmartTurn().close()  # the loaded model stays cached: later graphs load it at once


def silence_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return path


def frame(ts: float = 0.0, ms: int = 20, value: int = 1000) -> AudioFrame:
    n = 16 * ms
    return AudioFrame(np.full(n, value, dtype=np.int16).tobytes(), 16000, 1, ts)


def latency_parts(summary: VoiceTurnLatency) -> list[float]:
    """Every component of a turn's latency (every ``*_s`` field but the total)."""
    return [getattr(summary, f) for f in VoiceTurnLatency.__dataclass_fields__ if f.endswith("_s") and f != "total_s"]


def pass_through_sink() -> Stage[Any, Any]:
    return Stage("fake_speaker", lambda source: source, StageKind.SINK)


# -- the turn-taking stages, on virtual time ---------------------------------------------------------------


def test_barge_in_interrupts_only_a_busy_assistant_and_notes_where_speech_ended() -> None:
    bus = EventBus()
    floor = Floor(bus)
    run = run_virtual(barge_in(floor), [(1.0, SpeechStarted(0.5)), (2.0, SpeechStopped(1.9))], complete_at=3.0)
    assert run.values == [SpeechStarted(0.5), SpeechStopped(1.9)]  # idle: nothing to interrupt
    assert [type(e) for e in bus.events()] == [UserSpeechEnded]

    floor.reply_accepted(object(), 1)  # a reply in flight
    run = run_virtual(barge_in(floor, "after_sentence"), [(1.0, SpeechStarted(0.5))], complete_at=2.0)
    assert run.values == [BargeIn("after_sentence"), SpeechStarted(0.5)] and run.times == [1.0, 1.0]
    assert isinstance(run.values[0], Interrupt) and run.values[0].urgent
    assert not floor.busy  # the cut reply no longer holds the floor
    assert run.subscription == (0.0, 2.0)

    floor.playback_started(time.monotonic())
    assert run_virtual(barge_in(floor, "ignore"), [SpeechStarted(0.5)]).values == [SpeechStarted(0.5)]
    discarded = SpeechStopped(1.0, 0.1, discarded=True)
    assert run_virtual(barge_in(floor), [discarded]).values == [discarded]
    assert len(bus.events(UserSpeechEnded)) == 1  # a discarded turn is no user turn
    with pytest.raises(ConfigError, match="immediate, after_sentence, ignore"):
        barge_in(floor, "polite")


def test_speech_while_a_cut_reply_finishes_its_sentence_is_no_second_barge_in() -> None:
    """after_sentence: the cut reply plays on to its sentence's end; the user talking on (a pause, more words)
    is the same barge-in, not a second one (which would stop the sentence at once). A new reply is cut again."""
    floor = Floor()
    floor.playback_started(time.monotonic())
    floor.playing_turn = 1
    floor.reply_accepted(object(), 1)
    sch = TestScheduler()
    sch.schedule_absolute(2.5, lambda *_: floor.reply_accepted(object(), 2))  # the answer to the barge-in
    events = [(1.0, SpeechStarted(0.9)), (1.5, SpeechStopped(1.4)), (2.0, SpeechStarted(1.9)),
              (2.2, SpeechStopped(2.1)), (3.0, SpeechStarted(2.9))]  # fmt: skip
    run = run_virtual(barge_in(floor, "after_sentence"), events, complete_at=4.0, scheduler=sch)
    assert [t for t, x in zip(run.times, run.values, strict=True) if isinstance(x, BargeIn)] == [1.0, 3.0]


def test_duplex_gate_silences_the_mic_while_the_reply_plays_unless_headphones() -> None:
    floor = Floor()
    loud = frame(0.0)
    assert run_virtual(duplex_gate(floor), [loud, "x"]).values == [loud, "x"]
    floor.playback_started(time.monotonic())
    gated = run_virtual(duplex_gate(floor), [loud, frame(0.02), "x"]).values
    assert [type(x) for x in gated] == [AudioFrame, AudioFrame, str]
    assert gated[0].pcm == bytes(640) and gated[0].timestamp == 0.0 and gated[1].timestamp == 0.02  # silence, in time
    assert run_virtual(duplex_gate(floor, headphones=True), [loud]).values == [loud]
    floor.playback_finished(time.monotonic())
    assert run_virtual(duplex_gate(floor, echo_tail_ms=10_000), [loud]).values[0].pcm == bytes(640)  # echo tail
    assert run_virtual(duplex_gate(floor, echo_tail_ms=0), [loud]).values == [loud]
    with pytest.raises(ConfigError):
        duplex_gate(floor, echo_tail_ms=-1)


def test_after_sentence_barge_in_waits_for_the_sentence_playing_then_flushes() -> None:
    floor = Floor()
    sch = TestScheduler()
    stage = playout(pass_through_sink(), floor, device=True, scheduler=sch)
    second_reply = [ReplyStarted(2), Sentence("Next."), frame(0.0)]
    events: list[tuple[float, Any]] = [
        (0.1, ReplyStarted(1)),
        (0.1, Sentence("One.")),
        *[(0.1, frame(i * 0.02, ms=20)) for i in range(50)],  # 1.0 s of audio for "One."
        (0.1, Sentence("Two.")),
        *[(0.1, frame(1 + i * 0.02, ms=20)) for i in range(50)],
        (0.4, BargeIn("after_sentence")),
        *[(0.5, x) for x in second_reply],
    ]

    def started_playing(_: Any, __: Any = None) -> None:
        floor.playback_started(time.monotonic() - 0.3)  # 0.3 s of "One." has played

    sch.schedule_absolute(0.39, started_playing)
    run = run_virtual(stage, events, complete_at=2.0, scheduler=sch)
    barge = next(i for i, x in enumerate(run.values) if isinstance(x, BargeIn))
    # Held until "One." ends (0.7 s after the barge-in, give or take the real clock), then the rest in order.
    assert 1.05 < run.times[barge] < 1.15
    assert run.values[barge + 1 :] == second_reply
    assert run.completed_at == 2.0

    # Not playing: nothing to wait for, it goes on at once.
    floor.reset()
    run = run_virtual(playout(pass_through_sink(), floor, device=True, scheduler=TestScheduler()),
                      [(0.1, frame()), (0.2, BargeIn("after_sentence"))])  # fmt: skip
    assert run.times[-1] == 0.2 and isinstance(run.values[-1], BargeIn)


def test_after_sentence_waits_by_the_sinks_played_position_and_tells_it_where_to_stop() -> None:
    """With a speaker's position (played_s, by DAC time) the wait is checked against it, so an underrun that
    stalls the audio delays the cut; the sink is told at once where the sentence ends (stop_after), so the
    cut falls there even if the timer fires late; and the floor is told at once what will have been heard
    (a next turn may start before the sentence ends), once: not again at the sink's report."""
    floor = Floor()
    sch = TestScheduler()
    stops: list[float] = []
    cuts: list[tuple[int, str]] = []
    floor.on_cut = lambda turn, text: cuts.append((turn, text))

    def speaker_like(source: Observable[Any]) -> Observable[Any]:  # reports the cut, as a speaker does
        cut = PlaybackFinished(0.0, 1.0, interrupted=True)
        return source.pipe(ops.flat_map(lambda x: [x, cut] if isinstance(x, Interrupt) else [x]))

    def played() -> float:  # 0.25 s heard at the barge-in; then an underrun holds the audio at 0.9 s until 1.2
        now = sch.clock
        return now - 0.15 if now < 1.05 else (0.9 if now < 1.2 else now - 0.3)

    sink = Stage("fake_speaker", speaker_like, StageKind.SINK)
    stage = playout(sink, floor, device=True, scheduler=sch, position=played, stop_after=stops.append)
    events: list[tuple[float, Any]] = [
        (0.1, ReplyStarted(1)),
        (0.1, Sentence("One.")),
        *[(0.1, frame(i * 0.02, ms=20)) for i in range(50)],  # 1.0 s of audio for "One."
        (0.1, Sentence("Two.")),
        *[(0.1, frame(1 + i * 0.02, ms=20)) for i in range(50)],
        (0.4, BargeIn("after_sentence")),
        (0.5, TextDelta("held")),
    ]

    def started_playing(*_: Any) -> None:
        floor.playback_started(time.monotonic())
        floor.playing_turn = 1

    sch.schedule_absolute(0.39, started_playing)
    run = run_virtual(stage, events, complete_at=2.0, scheduler=sch)
    assert stops == [pytest.approx(1.0)]  # the end of "One.", told at the barge-in
    assert cuts == [(1, "One.")]
    barge = next(i for i, x in enumerate(run.values) if isinstance(x, BargeIn))
    # Due at 1.15 by the position at 0.4; played 0.9 then, 0.95 at 1.25: released once 1.0 had played.
    assert run.times[barge] == pytest.approx(1.3)
    assert run.values[barge + 1 :] == [PlaybackFinished(0.0, 1.0, interrupted=True), TextDelta("held")]


def test_playout_reports_playback_to_the_floor_and_first_audio_out_for_files() -> None:
    bus = EventBus()
    floor = Floor(bus)
    floor.speech_stopped(1.0)
    turn = floor.transcribed("hello")
    floor.reply_accepted(message := object(), turn)
    run = run_virtual(playout(pass_through_sink(), floor, device=False), [ReplyStarted(turn), frame(), frame()])
    assert [type(x) for x in run.values] == [ReplyStarted, AudioFrame, AudioFrame]
    assert [type(e) for e in bus.events()] == [UserSpeechEnded, FinalTranscript, FirstAudioOut, VoiceTurnLatency]
    assert bus.events(FirstAudioOut)[0].device is False  # type: ignore[attr-defined]

    floor.reply_accepted(message, turn)
    end = EndOfTurn(None, type("T", (), {"user": message})())  # type: ignore[arg-type]
    run_virtual(playout(pass_through_sink(), floor), [PlaybackStarted(5.0), PlaybackFinished(6.0, 1.0), end])
    assert not floor.busy and floor.played_until == 6.0 and floor.playing_since == 5.0


def test_floor_splits_a_turns_latency_by_component() -> None:
    bus, provider_bus = EventBus(), EventBus()
    floor = Floor(bus, provider_bus)
    t0 = time.monotonic()
    floor.heard(10.0, t0)  # the frame ending at audio time 10.0 arrived at t0
    floor.speech_stopped(10.0)
    turn = floor.transcribed("what time is it")
    floor.mark(turn, "message_in")
    provider_bus.publish(ProviderFirstToken(provider="mock", ttft_s=0.2))
    for step in ("first_token", "first_sentence", "first_tts_audio", "audio_queued"):
        floor.mark(turn, step)
    floor.mark(turn, "first_token")  # only the first counts
    floor.audio_out(turn, time.monotonic() + 0.1, device=True)
    marks = bus.events(VoiceTurnEvent)
    assert [type(e) for e in marks] == [UserSpeechEnded, FinalTranscript, FirstModelToken, FirstTTSAudio, FirstAudioOut]
    assert all(e.turn == 1 for e in marks)  # type: ignore[attr-defined]
    assert [e.since_speech_end_s for e in marks] == sorted(e.since_speech_end_s for e in marks)  # type: ignore[attr-defined]
    (summary,) = bus.events(VoiceTurnLatency)
    assert isinstance(summary, VoiceTurnLatency) and summary.transcript == "what time is it"
    assert summary.model_ttft_s == 0.2  # the provider's own figure
    assert summary.audio_out_s >= 0.1
    assert sum(latency_parts(summary)) == pytest.approx(summary.total_s)
    assert summary.total_s == pytest.approx(marks[-1].since_speech_end_s)  # type: ignore[attr-defined]


def test_a_mic_turn_takes_the_end_of_speech_at_the_mic_and_times_the_frames_delivery() -> None:
    """With a microphone (frames stamped with time.monotonic()) the end of speech is when it was at the mic,
    not when its frame reached the graph: the delivery (the mic's block, the hand-off to the loop, a busy loop)
    is ``audio_in_s``, in the total. A file's clock starts at 0: there the end is its frame's arrival."""
    t0 = time.monotonic()
    totals = {}
    for mic, end in ((True, t0 - 0.5), (False, 3.0)):
        bus = EventBus()
        floor = Floor(bus)
        floor.heard(end, t0 - 0.2)  # the frame ending at ``end`` (the input's clock) reached the graph at t0 - 0.2
        floor.speech_stopped(end)
        turn = floor.transcribed("hello")
        for step in ("message_in", "first_token", "first_sentence", "first_tts_audio", "audio_queued"):
            floor.mark(turn, step)
        floor.audio_out(turn, time.monotonic(), device=True)
        (summary,) = bus.events(VoiceTurnLatency)
        (ended,) = bus.events(UserSpeechEnded)
        assert isinstance(summary, VoiceTurnLatency) and isinstance(ended, UserSpeechEnded)
        assert sum(latency_parts(summary)) == pytest.approx(summary.total_s) and summary.framework_s >= 0
        assert summary.vad_hangover_s == pytest.approx(0.2, abs=0.05)  # the frame's arrival -> the verdict
        if mic:
            assert summary.audio_in_s == pytest.approx(0.3) and ended.speech_end == t0 - 0.5
        else:
            assert summary.audio_in_s == 0 and ended.speech_end == t0 - 0.2
        totals[mic] = summary.total_s
    assert totals[True] - totals[False] == pytest.approx(0.3, abs=0.05)


# -- the assistant stage: the text-mode graph per user turn ---------------------------------------------------


async def drive(
    stage: Stage[Any, Any], *items: Any, until: type = EndOfTurn, count: int = 1
) -> tuple[Subject[Any], list[Any]]:
    feed: Subject[Any] = Subject()
    out: list[Any] = []
    stage(feed).subscribe(out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
    for x in items:
        feed.on_next(x)
    deadline = time.monotonic() + 10
    while sum(isinstance(x, until) for x in out) < count:
        assert time.monotonic() < deadline, f"no {until.__name__} in {out}"
        await asyncio.sleep(0.01)
    return feed, out


async def test_assistant_answers_final_transcripts_in_order_and_passes_the_rest_at_once() -> None:
    floor = Floor()
    provider = MockProvider(["First answer.", "Second answer."])
    stage = assistant(text_graph(provider), floor)
    _, out = await drive(stage, Transcript("hel", final=False), Transcript("hello"), SpeechStarted(1.0),
                         Transcript("again"), Transcript("  "), until=EndOfTurn, count=2)  # fmt: skip
    kinds = [type(x).__name__ for x in out]
    assert kinds[:4] == ["Transcript", "Transcript", "ReplyStarted", "SpeechStarted"]
    assert [x.text for x in out if isinstance(x, ReplyStarted)] == ["hello", "again"]  # the blank one is no turn
    assert [x.response.text for x in out if isinstance(x, EndOfTurn)] == ["First answer.", "Second answer."]
    assert [m.messages[-1].text for m in provider.requests] == ["hello", "again"]
    assert len(provider.requests[1].messages) == 3  # the second turn saw the first in its history
    assert sorted(floor.in_flight.values()) == [1, 2]  # busy until playout sees their EndOfTurn at the output


async def test_an_interrupt_cancels_the_turn_in_flight_and_drops_waiting_turns() -> None:
    floor = Floor()
    provider = MockProvider([MockResponse("never heard", first_token_latency=5.0), "Fresh."])
    store = MemoryStore()  # the text graph's history, where the cut turn is saved too
    stage = assistant(text_graph(provider, store=store), floor, store=store)
    feed, out = await drive(stage, Transcript("one"), Transcript("two"), until=ReplyStarted)
    while not provider.requests:  # the model is working on "one"
        await asyncio.sleep(0.01)
    feed.on_next(BargeIn())
    assert isinstance(out[-1], BargeIn) and not floor.busy
    feed.on_next(Transcript("three"))
    while not any(isinstance(x, EndOfTurn) for x in out):
        await asyncio.sleep(0.01)
    assert [x.text for x in out if isinstance(x, ReplyStarted)] == ["one", "three"]  # "two" was dropped
    assert [x.response.text for x in out if isinstance(x, EndOfTurn)] == ["Fresh."]
    assert not any(isinstance(x, TextDelta) and "never" in x.text for x in out)
    # Nothing of the cut reply was playing: its question stays in the history, without an answer.
    assert [(m.role, m.text) for m in provider.requests[-1].messages] == [("user", "one"), ("user", "three")]


async def test_a_failed_turn_is_reported_in_band_and_the_conversation_goes_on() -> None:
    stage = assistant(text_graph(MockProvider([ProviderError("the model is down", provider="mock"), "Back."])), Floor())
    _, out = await drive(stage, Transcript("one"), Transcript("two"), count=2)
    errors = [x for x in out if isinstance(x, ErrorElement)]
    assert len(errors) == 1 and "down" in str(errors[0].error)
    ends = [x for x in out if isinstance(x, EndOfTurn)]
    assert ends[0].response is None and ends[0].turn is not None and ends[0].turn.user.text == "one"
    assert ends[1].response is not None and ends[1].response.text == "Back."


def test_assistant_refuses_a_queue_that_holds_no_turn() -> None:
    with pytest.raises(ConfigError, match="max_waiting"):
        assistant(text_graph(MockProvider()), Floor(), max_waiting=0)


# -- the whole graph on WAV files ---------------------------------------------------------------------------


async def test_file_mode_hears_the_recording_answers_it_and_writes_the_reply(
    tmp_path: Path, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    bus = EventBus()
    reply = "He might, yes. Austen wrote that about John Dashwood."
    provider = MockProvider([MockResponse(reply, first_token_latency=0.05)], bus=bus)
    async with ano_leaks():
        graph = voice_graph(provider, source=recording("0920"), sink=tmp_path / "reply.wav", stt=stt, tts=tts, bus=bus)
        out = await graph.arun()
    assert isinstance(graph, VoiceGraph) and graph.owned == []  # the engines are ours, not the graph's
    ((heard, answered),) = transcript_and_reply(out)
    assert shared_words(TRANSCRIPTS["0920"], heard) >= 0.7
    assert answered == reply
    spoken = ["He might, yes.", "Austen wrote that about John Dashwood."]
    assert [x.text for x in out if isinstance(x, Sentence)] == spoken
    with wave.open(str(tmp_path / "reply.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels()) == (tts.sample_rate, 1)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    expected = sum(len(tts.synthesize(s)) // 2 for s in spoken)
    assert len(audio) == pytest.approx(expected, rel=0.01)  # the whole reply (espeak-ng varies by a few samples)
    assert np.abs(audio).max() > 3000  # and not silence
    # One turn's latency marks, in order, and a summary whose parts add up.
    marks = bus.events(VoiceTurnEvent)
    assert [type(e) for e in marks] == [UserSpeechEnded, FinalTranscript, FirstModelToken, FirstTTSAudio, FirstAudioOut]
    (summary,) = bus.events(VoiceTurnLatency)
    assert isinstance(summary, VoiceTurnLatency) and summary.turn == 1 and summary.audio_out_s == 0.0
    assert summary.model_ttft_s >= 0.05 and summary.tts_first_chunk_s > 0 and summary.stt_s > 0
    assert 0 <= summary.framework_s < summary.total_s


@pytest.mark.parametrize("words", [4, 0], ids=["first-clause", "whole-sentence"])
async def test_speech_starts_on_the_first_clause_before_the_first_sentence_is_written(
    words: int, tmp_path: Path, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    bus = EventBus()
    # Two pieces 3 s apart: the first clause is written at once, the first sentence ends only 3 s later.
    chunks = ["Well, I think that he was, as the book", " says, rather cold hearted and rather selfish. Yes."]
    provider = MockProvider([MockResponse(chunks=chunks, first_token_latency=0.05, chunk_latency=3.0)], bus=bus)
    graph = voice_graph(provider, source=recording("0920"), sink=tmp_path / "r.wav", stt=stt, tts=tts, bus=bus,
                        first_clause_words=words)  # fmt: skip
    out = await graph.arun()
    first_token, first_audio = bus.events(FirstModelToken)[0], bus.events(FirstTTSAudio)[0]
    waited = first_audio.since_speech_end_s - first_token.since_speech_end_s  # type: ignore[attr-defined]
    spoken = [x.text for x in out if isinstance(x, Sentence)]
    assert " ".join(spoken) == "".join(chunks)
    if words:  # the default: TTS starts while the model is still writing the first sentence
        assert spoken[:2] == ["Well, I think that he was,", "as the book says, rather cold hearted and rather selfish."]
        assert waited < 3.0
    else:
        assert spoken[0] == "Well, I think that he was, as the book says, rather cold hearted and rather selfish."
        assert waited >= 3.0


async def test_file_mode_converts_stereo_44k_input_and_finds_no_turn_in_silence(
    tmp_path: Path, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    from rxkit.audio.convert import resample
    from rxkit.audio.wav import read_wav, write_wav

    speech = read_wav(recording("0930"))
    mono44 = resample(speech.pcm, 16000, 44100)
    write_wav(tmp_path / "stereo.wav", AudioFrame(np.repeat(mono44, 2).tobytes(), 44100, 2))
    provider = MockProvider()
    out = await voice_graph(provider, source=tmp_path / "stereo.wav", sink=tmp_path / "r.wav", stt=stt, tts=tts).arun()
    ((heard, answered),) = transcript_and_reply(out)
    assert shared_words(TRANSCRIPTS["0930"], heard) >= 0.5 and answered == heard  # the mock echoes

    out = await voice_graph(provider, source=silence_wav(tmp_path / "quiet.wav", 2.0), sink=tmp_path / "q.wav",
                            stt=stt, tts=tts).arun()  # fmt: skip
    assert out == [] and len(provider.requests) == 1


async def test_the_graph_draws_itself_and_bad_settings_fail_before_any_audio(
    stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    graph = voice_graph(MockProvider(), source=recording("0880"), sink="unused.wav", stt=stt, tts=tts)
    chart = graph.to_mermaid()
    order = ["wav_source", "duplex_gate", "vad", "turn_detector", "barge_in", "transcribe", "text",
             "sentence_chunker", "synthesize", "wav_sink"]  # fmt: skip
    assert list(graph.nodes) == order
    assert [chart.index(f'"{name}<br/>') for name in order] == sorted(chart.index(f'"{name}<br/>') for name in order)
    assert not Path("unused.wav").exists()  # nothing runs until subscribed
    with pytest.raises(ConfigError, match="barge_in"):
        voice_graph(MockProvider(), source=recording("0880"), stt=stt, tts=tts, barge_in="sometimes")
    with pytest.raises(ConfigError, match="no such WAV file"):
        voice_graph(MockProvider(), source="missing.wav", stt=stt, tts=tts)


async def test_voice_assistant_runs_a_file_and_closes_what_it_made(tmp_path: Path) -> None:
    async with ano_leaks():
        va = VoiceAssistant("mock", source=recording("0930"), sink=tmp_path / "reply.wav")
        try:
            out = await va.arun()
        finally:
            await va.aclose()
    ((heard, answered),) = transcript_and_reply(out)
    assert heard and answered == heard
    assert va.graph.owned == [] and not va.floor.busy


async def test_the_model_can_call_tools_in_a_voice_turn(tmp_path: Path, stt: PocketSphinxSTT, tts: Pyttsx3TTS) -> None:
    from rxkit.types import ToolCall

    calls: list[str] = []

    def lookup(name: str) -> str:
        """Look a character up in the book."""
        calls.append(name)
        return "John Dashwood, Elinor's half-brother."

    call = ToolCall(id="c1", name="lookup", arguments='{"name": "John"}')
    provider = MockProvider([MockResponse(tool_calls=[call]), "He is Elinor's half-brother."])
    graph = voice_graph(provider, source=recording("0930"), sink=tmp_path / "r.wav", stt=stt, tts=tts, tools=[lookup])
    out = await graph.arun()
    assert calls == ["John"]
    ((_, answered),) = transcript_and_reply(out)
    assert answered == "He is Elinor's half-brother."
    assert [x.text for x in out if isinstance(x, Sentence)] == ["He is Elinor's half-brother."]  # the answer alone
    assert provider.requests[1].messages[-1].role == "tool"


async def test_voice_assistant_takes_typed_turns_and_interrupts_from_the_script(tmp_path: Path) -> None:
    provider = MockProvider([MockResponse("This answer is never heard.", first_token_latency=5.0), "Second."])
    quiet = silence_wav(tmp_path / "quiet.wav", 3.0)  # read in real time: the conversation lasts 3 s
    async with VoiceAssistant(provider, source=quiet, realtime=True, sink=tmp_path / "r.wav") as va:
        va.interrupt()  # not running: nothing happens
        asyncio.get_running_loop().call_later(0.3, va.say, "what is this")
        out: list[Any] = []
        async for x in va.astream():
            out.append(x)
            if isinstance(x, ReplyStarted) and x.turn == 1:
                while not provider.requests:  # the model is working on it
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(va.interrupt)  # from another thread, as a UI would
            elif isinstance(x, Interrupt):
                va.say("and now")
    kinds = [type(x).__name__ for x in out]
    assert kinds[:3] == ["Transcript", "ReplyStarted", "Interrupt"] and out[2].reason == "user"
    assert [x.response.text for x in out if isinstance(x, EndOfTurn)] == ["Second."]
    assert [m.messages[-1].text for m in provider.requests] == ["what is this", "and now"]


async def test_dispose_mid_turn_stops_everything(tmp_path: Path, stt: PocketSphinxSTT, tts: Pyttsx3TTS) -> None:
    provider = MockProvider([MockResponse("Slow. " * 5, first_token_latency=30.0)])
    async with ano_leaks():
        graph = voice_graph(provider, source=recording("0880"), sink=tmp_path / "r.wav", stt=stt, tts=tts)
        async for x in graph.astream():
            if isinstance(x, ReplyStarted):
                while not provider.requests:
                    await asyncio.sleep(0.01)
                break  # the model is working: leaving the loop disposes the graph, which cancels the call
    assert len(provider.requests) == 1


# -- live, on PulseAudio's virtual microphone and speaker ------------------------------------------------------


class Live:
    """A voice graph on the virtual mic and speaker, recording what comes out and when the mic is live."""

    def __init__(self, provider: Any, stt: PocketSphinxSTT, tts: Pyttsx3TTS, bus: EventBus, **options: Any) -> None:
        from rxkit.audio.mic import microphone

        self.frames = 0
        mic = microphone(block_ms=20).pipe(ops.do_action(lambda _: self._count()))
        self.graph = voice_graph(provider, source=mic, stt=stt, tts=tts, bus=bus, **options)
        self.out: list[Any] = []
        self.errors: list[Exception] = []
        self.sub = self.graph(reactivex.empty()).subscribe(
            self.out.append, self.errors.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop())
        )

    def _count(self) -> None:
        self.frames += 1

    def of(self, kind: type) -> list[Any]:
        return [x for x in self.out if isinstance(x, kind)]

    async def until(self, condition: Any, what: str, timeout: float = 90.0) -> None:
        await wait_for(lambda: condition() or self.errors, timeout, what)
        assert not self.errors, self.errors

    async def ready(self) -> None:
        await self.until(lambda: self.frames >= 10, "the microphone to deliver frames")


def spoken_seconds(tts: Pyttsx3TTS, sentences: list[str]) -> tuple[float, float]:
    """(length, seconds above the silence threshold) of ``sentences`` as this TTS speaks them."""
    pcm = np.frombuffer(b"".join(tts.synthesize(s) for s in sentences), dtype=np.int16)
    return len(pcm) / tts.sample_rate, nonsilent_seconds(pcm, rate=tts.sample_rate)


@pytest.mark.audio
async def test_live_turn_is_heard_transcribed_answered_and_spoken(
    pulse: PulseAudio, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    sentences = ["Yes, he was not.", "But he was rather cold hearted, and rather selfish."]
    bus = EventBus()
    baseline = os_threads()
    async with ano_leaks():
        live = Live(MockProvider([" ".join(sentences)], bus=bus), stt, tts, bus)
        try:
            await live.ready()
            mark = pulse.capture_position()
            await pulse.play_into_mic(recording("0880"))  # "he was not an ill disposed young man", 3 s
            await live.until(lambda: live.of(PlaybackFinished), "the reply to play")
            await asyncio.sleep(0.4)  # the monitor recorder's own latency
            heard = pulse.captured_since(mark)
        finally:
            live.sub.dispose()
        await threads_back_to(baseline)  # mic and speaker streams closed
    ((said, answered),) = transcript_and_reply(live.out)
    assert shared_words(TRANSCRIPTS["0880"], said) >= 0.5, said
    assert answered == " ".join(sentences)
    kinds = [type(x) for x in live.out if not isinstance(x, (Sentence, Transcript, ReplyStarted))]
    assert kinds == [SpeechStarted, SpeechStopped, PlaybackStarted, PlaybackFinished, EndOfTurn]
    length, voiced = spoken_seconds(tts, sentences)
    finished = live.of(PlaybackFinished)[0]
    assert not finished.interrupted and finished.played_s == pytest.approx(length, abs=0.15)
    assert nonsilent_seconds(heard) == pytest.approx(voiced, rel=0.25)  # the whole reply reached the speaker
    (summary,) = bus.events(VoiceTurnLatency)
    assert isinstance(summary, VoiceTurnLatency) and summary.audio_out_s > 0  # the device's buffer, measured
    assert summary.vad_hangover_s >= 0.5  # stop_ms=700 of silence had to pass, on the mic's clock
    assert summary.audio_in_s > 0  # the end of speech is taken at the mic: its frame's delivery is counted
    assert sum(latency_parts(summary)) == pytest.approx(summary.total_s) and summary.framework_s >= 0
    assert not live.graph.floor.busy


@pytest.mark.audio
@pytest.mark.parametrize(
    ("strategy", "model_done"),
    [("immediate", False), ("after_sentence", False), ("immediate", True)],
    ids=["immediate-while-writing", "after-sentence-while-writing", "immediate-after-the-answer"],
)
async def test_barge_in_with_headphones_stops_the_reply_and_starts_a_new_turn(
    strategy: str, model_done: bool, pulse: PulseAudio, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    first = ["This first sentence of my answer is long enough to be talked over, as you will hear.",
             "Then comes a second sentence.", "And a third one, which nobody should ever hear."]  # fmt: skip
    _, voiced = spoken_seconds(tts, first)
    first_sentence, _ = spoken_seconds(tts, first[:1])
    bus = EventBus()
    # Words 0.2 s apart: the model is still writing the second sentence when the user talks over the first;
    # or the whole answer at once: it is saved before its first sentence has finished playing.
    answer = " ".join(first) if model_done else MockResponse(" ".join(first), chunk_latency=0.2)
    model = MockProvider([answer, "Sorry, go on."])
    # Whole sentences from the start (first_clause_words=0): the cuts below are timed by the first sentence.
    live = Live(model, stt, tts, bus, headphones=True, barge_in=strategy, first_clause_words=0)
    try:
        await live.ready()
        await pulse.play_into_mic(recording("0880"))
        await live.until(lambda: live.of(PlaybackStarted), "the first reply to play")
        mark = pulse.capture_position()
        await asyncio.sleep(0.5)
        await pulse.play_into_mic(recording("0930"))  # "he might even have been made amiable himself", 3.3 s
        await live.until(lambda: len(live.of(ReplyStarted)) == 2, "the second turn")
        cut = pulse.captured_since(mark)
        await live.until(lambda: len(live.of(PlaybackFinished)) == 2, "the second reply to play")
    finally:
        live.sub.dispose()
    barge = live.of(BargeIn)
    assert len(barge) == 1 and barge[0].strategy == strategy
    stopped, second = live.of(PlaybackFinished)
    assert stopped.interrupted and not second.interrupted
    if strategy == "immediate":
        assert stopped.played_s < first_sentence  # cut inside the first sentence
    else:
        # The sentence ended, nothing more: timed by the speaker's played position (the DAC time of its
        # blocks), not by the clock since PlaybackStarted, which ran up to ~0.4 s ahead of the audio.
        assert stopped.played_s == pytest.approx(first_sentence, abs=0.3)
    assert nonsilent_seconds(cut) < 0.6 * voiced  # much shorter than the whole reply
    said = [x.text for x in live.of(Transcript)]
    assert len(said) == 2 and shared_words(TRANSCRIPTS["0930"], said[1]) >= 0.4, said
    assert [x.response.text for x in live.of(EndOfTurn) if x.response is not None][-1] == "Sorry, go on."
    at = live.out.index(barge[0])
    assert live.out[at + 1] is stopped  # the speaker stopped right on it
    assert live.out.index(live.of(PlaybackStarted)[0]) < at < live.out.index(live.of(ReplyStarted)[1])
    # The cut turn was saved as heard (while writing it used to vanish, question and all; after the answer it
    # was kept whole): the question, then the sentence that had begun playing, no more.
    history = [(m.role, m.text) for m in model.requests[1].messages]
    assert history[-3:] == [("user", said[0]), ("assistant", first[0]), ("user", said[1])], history


@pytest.mark.audio
async def test_half_duplex_does_not_hear_speech_during_playback(
    pulse: PulseAudio, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    reply = ["I am answering now, and this answer goes on for quite a while.",
             "You may talk, but without headphones I cannot hear you until I am done."]  # fmt: skip
    length, _ = spoken_seconds(tts, reply)
    live = Live(MockProvider([" ".join(reply)]), stt, tts, EventBus(), headphones=False)
    try:
        await live.ready()
        await pulse.play_into_mic(recording("0880"))
        await live.until(lambda: live.of(PlaybackStarted), "the reply to play")
        await asyncio.sleep(0.3)
        await pulse.play_into_mic(recording("0930"))  # ends well before the reply does
        await live.until(lambda: live.of(PlaybackFinished), "the reply to finish")
        await asyncio.sleep(1.5)  # time enough for a turn to be detected, if anything was heard
    finally:
        live.sub.dispose()
    (finished,) = live.of(PlaybackFinished)
    assert not finished.interrupted and finished.played_s == pytest.approx(length, abs=0.15)
    assert live.of(BargeIn) == [] and len(live.of(SpeechStarted)) == 1 and len(live.of(Transcript)) == 1


@pytest.mark.audio
@pytest.mark.local_model
async def test_live_turn_answered_by_the_real_local_model(
    pulse: PulseAudio, local_server: str, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    from rxkit.providers.local import LocalProvider

    provider = LocalProvider(base_url=local_server, defaults={"max_tokens": 24})
    try:
        live = Live(provider, stt, tts, EventBus(), prompt="Answer in one short sentence.")
        try:
            await live.ready()
            mark = pulse.capture_position()
            await pulse.play_into_mic(recording("0880"))
            await live.until(lambda: live.of(PlaybackFinished) or live.of(ErrorElement), "the reply to play", 180)
            await asyncio.sleep(0.4)
            heard = pulse.captured_since(mark)
        finally:
            live.sub.dispose()
    finally:
        await provider.aclose()
    assert live.of(ErrorElement) == []
    ((said, answered),) = transcript_and_reply(live.out)
    assert said and answered.strip()
    spoken = [x.text for x in live.of(Sentence)]
    assert spoken and " ".join(spoken).split()[0] in answered
    length, voiced = spoken_seconds(tts, spoken)
    assert live.of(PlaybackFinished)[0].played_s == pytest.approx(length, abs=0.15)
    assert nonsilent_seconds(heard) == pytest.approx(voiced, rel=0.3)


@pytest.mark.parametrize(
    ("options", "error"),
    [({"prompt": "{{ oops"}, "TemplateError"), ({"tools": [1]}, "ConfigError")],
)
def test_a_graph_that_fails_to_build_leaves_no_speech_engine_running(
    options: dict[str, Any], error: str, tmp_path: Path
) -> None:
    """The engines it made (threads with a model loaded) used to outlive a build that failed after them."""
    import threading

    def engines() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith(("rxkit-stt", "rxkit-tts")))

    before = engines()
    with pytest.raises(Exception) as failed:
        voice_graph(MockProvider(), source=silence_wav(tmp_path / "q.wav", 0.5), sink=tmp_path / "r.wav", **options)
    assert error in [c.__name__ for c in type(failed.value).__mro__], repr(failed.value)
    deadline = time.monotonic() + 10
    while engines() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engines() == before


@pytest.mark.audio
@pytest.mark.parametrize(("engine", "burst"), [("silero", "cough-300"), ("silero", "clicks-300"),
                                               ("silero", "noise-300"), ("webrtc", "cough-250")])  # fmt: skip
async def test_a_noise_burst_over_the_reply_never_cuts_it_nor_becomes_a_question(
    engine: str, burst: str, tmp_path: Path, pulse: PulseAudio, stt: PocketSphinxSTT, tts: Pyttsx3TTS
) -> None:
    from rxkit.audio.wav import write_wav
    from rxkit.operators import FalseInterruption
    from tests.audio.noise import bursts, with_silence

    noise = tmp_path / "burst.wav"
    write_wav(noise, AudioFrame(with_silence(bursts()[burst], 0.1, 0.2).tobytes(), 16000, 1))
    reply = ["I am answering your question now, and this answer goes on for quite a while.",
             "A cough or a click while I talk must not cut me off."]  # fmt: skip
    length, _ = spoken_seconds(tts, reply)
    model = MockProvider([" ".join(reply), "Nothing more."])
    # webrtcvad hears 0.5-0.6 s of "speech" in a 250 ms cough on this path: confirm_ms above that shows
    # the pause and resume on the real speaker (Silero, the default, hears nothing at the default 500 ms).
    confirm = {"confirm_ms": 900} if engine == "webrtc" else {}
    live = Live(model, stt, tts, EventBus(), headphones=True, vad=engine, **confirm)
    try:
        await live.ready()
        await pulse.play_into_mic(recording("0880"))
        await live.until(lambda: live.of(PlaybackStarted), "the reply to play")
        await asyncio.sleep(0.5)
        await pulse.play_into_mic(noise)
        await live.until(lambda: live.of(PlaybackFinished), "the reply to finish", 60)
        await asyncio.sleep(1.0)  # time enough for a turn to be answered, if one had been heard
    finally:
        live.sub.dispose()
    kinds = [type(x).__name__ for x in live.out if not isinstance(x, (Sentence, ReplyStarted))]
    assert len(live.of(PlaybackFinished)) == 1, kinds
    (finished,) = live.of(PlaybackFinished)
    assert not finished.interrupted and finished.played_s == pytest.approx(length, abs=0.15), kinds  # all of it
    assert live.of(BargeIn) == [] and len(live.of(Transcript)) == 1 and len(model.requests) == 1
    ((_, answered),) = transcript_and_reply(live.out)
    assert answered == " ".join(reply)
    if engine == "silero":
        assert len(live.of(SpeechStarted)) == 1 and live.of(FalseInterruption) == []  # not even heard as speech
    else:  # heard as speech: the reply paused, then resumed where it was (played_s above: nothing skipped)
        assert len(live.of(SpeechStarted)) == 2 and len(live.of(FalseInterruption)) == 1
