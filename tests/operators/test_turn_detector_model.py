"""turn_detector(end_of_turn=...): a model decides at the first short pause, on virtual time with a scripted model."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from reactivex.testing import TestScheduler

from rxkit.elements import SpeechStopped, Utterance
from rxkit.errors import AudioError, ConfigError
from rxkit.operators import turn_detector
from rxkit.testing import run_virtual
from tests.operators.test_turn_detector import frames, indices, kinds


class ScriptedModel:
    """Answers each question with the next probability, ``latency`` seconds of virtual time later."""

    threshold = 0.5

    def __init__(self, sch: TestScheduler, verdicts: list[float | Exception], latency: float = 0.11) -> None:
        self.sch, self.verdicts, self.latency = sch, list(verdicts), latency
        self.asked: list[tuple[float, list[int]]] = []  # (when, which frames it heard)
        self.futures: list[concurrent.futures.Future[float]] = []

    def submit(self, pcm: bytes, sample_rate: int, channels: int) -> concurrent.futures.Future[float]:
        assert (sample_rate, channels) == (16000, 1)
        self.asked.append((round(self.sch.clock, 6), list(pcm[::640])))
        future: concurrent.futures.Future[float] = concurrent.futures.Future()
        self.futures.append(future)
        answer = self.verdicts.pop(0)

        def answer_now(*_: Any) -> None:
            if future.cancelled():
                return
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

        if self.latency == 0:
            answer_now()
        else:
            self.sch.schedule_relative(self.latency, answer_now)
        return future


# Pre-roll 0-4, speech 5-34 (0.10-0.68 s), then silence from frame 35 (t=0.70): 200 ms of it is reached
# with frame 44, which arrives at 0.90; 700 ms (stop_ms) with frame 69, at 1.40; 1400 ms (the wait for a
# turn heard as unfinished) with frame 104, at 2.10.
PATTERN = "0" * 5 + "1" * 30 + "0" * 80


def detector(model: Any, **kwargs: Any) -> Any:
    opts: dict[str, Any] = {"start_ms": 200, "stop_ms": 700, "min_speech_ms": 100, "pre_roll_ms": 100}
    return turn_detector(**{**opts, **kwargs}, end_of_turn=model, vad_stop_ms=200, incomplete_stop_ms=1400)


def test_a_complete_verdict_ends_the_turn_at_the_short_pause() -> None:
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9])
    run = run_virtual(detector(model), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    # Asked when 200 ms of silence is in (0.90), with the turn so far: pre-roll, speech and that silence.
    assert model.asked == [(pytest.approx(0.90), list(range(0, 45)))]
    stopped, utt = run.values[1], run.values[2]
    assert run.times[1] == pytest.approx(0.90 + 0.11)  # the verdict's arrival, not 700 ms of silence (1.40)
    assert (stopped.timestamp, stopped.reason) == (pytest.approx(0.70), "end_of_turn_model")
    assert indices(utt) == list(range(0, 50)) and utt.reason == "end_of_turn_model"  # frames up to the verdict
    assert run.subscription == (0.0, 5.0)


def test_an_incomplete_verdict_waits_longer_than_stop_ms() -> None:
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.2])
    run = run_virtual(detector(model), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert len(model.asked) == 1  # one question per pause
    assert run.times[1] == pytest.approx(2.10) and run.values[1].reason == "silence"  # 1400 ms, not 700


def test_a_pause_heard_as_unfinished_outlasts_stop_ms_and_the_turn_goes_on() -> None:
    # Unfinished at the first pause; the user goes on after 1 s (past stop_ms), then stops for good.
    pattern = "0" * 5 + "1" * 30 + "0" * 50 + "1" * 20 + "0" * 40
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.2, 0.9])
    run = run_virtual(detector(model), frames(pattern), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]  # one turn, both phrases
    # Second pause from frame 105 (t=2.10): asked at 2.30, complete at 2.41.
    assert [t for t, _ in model.asked] == [pytest.approx(0.90), pytest.approx(2.30)]
    assert run.times[1] == pytest.approx(2.41) and run.values[1].reason == "end_of_turn_model"
    assert run.values[1].timestamp == pytest.approx(2.10)


def test_a_verdict_that_comes_after_the_user_spoke_again_is_ignored() -> None:
    # A 300 ms pause (frames 35-49), then speech again from frame 50 (arrives 1.02), then silence.
    pattern = "0" * 5 + "1" * 30 + "0" * 15 + "1" * 20 + "0" * 60
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.99, 0.99], latency=0.15)  # the first verdict lands at 1.05, after 1.02
    run = run_virtual(detector(model), frames(pattern), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    # Second pause: silence from frame 70 (t=1.40); 200 ms reached with frame 79, arriving at 1.60.
    assert [t for t, _ in model.asked] == [pytest.approx(0.90), pytest.approx(1.60)]
    assert run.times[1] == pytest.approx(1.75) and run.values[1].timestamp == pytest.approx(1.40)
    assert indices(run.values[2])[-1] == 86  # one turn, both phrases: the first "complete" did not cut it


def test_a_slow_model_never_makes_the_turn_end_later_than_silence_alone() -> None:
    for verdict in (0.99, 0.2):
        sch = TestScheduler()
        model = ScriptedModel(sch, [verdict], latency=2.0)  # lands at 2.90, long after stop_ms (1.40)
        run = run_virtual(detector(model), frames(PATTERN), complete_at=5.0, scheduler=sch)
        assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
        assert run.times[1] == pytest.approx(1.40) and run.values[1].reason == "silence"


def test_one_question_in_flight_a_later_pause_is_asked_when_the_stale_verdict_is_in() -> None:
    # Two short pauses: 240 ms (frames 35-46) and, after 100 ms of speech, a long one from frame 52.
    pattern = "0" * 5 + "1" * 30 + "0" * 12 + "1" * 5 + "0" * 70
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.99, 0.8], latency=0.37)  # the first lands at 1.27, after speech resumed
    run = run_virtual(detector(model), frames(pattern), complete_at=5.0, scheduler=sch)
    # The second pause reaches 200 ms with frame 61 (arrives 1.24) while the first question is out;
    # it is asked as soon as that stale verdict is in (1.27), and its own verdict ends the turn at 1.64.
    assert [t for t, _ in model.asked] == [pytest.approx(0.90), pytest.approx(1.27)]
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert run.times[1] == pytest.approx(1.64) and run.values[1].reason == "end_of_turn_model"
    assert run.values[1].timestamp == pytest.approx(1.04)


def test_waiting_for_the_model_decides_at_the_pause_itself() -> None:
    """For input read faster than real time: the verdict is taken at the frame that asked, so runs repeat."""
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9], latency=0)
    run = run_virtual(detector(model, wait_for_model=True), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert run.times[1] == pytest.approx(0.90) and run.values[1].reason == "end_of_turn_model"
    assert indices(run.values[2]) == list(range(0, 45))


def test_without_a_scheduler_or_loop_the_model_is_waited_for() -> None:
    from reactivex import from_iterable

    model = ScriptedModel(TestScheduler(), [0.9], latency=0)
    out: list[Any] = []
    from_iterable([f for _, f in frames(PATTERN)]).pipe(detector(model)).subscribe(out.append)
    assert [type(e).__name__ for e in out] == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert isinstance(out[1], SpeechStopped) and out[1].reason == "end_of_turn_model"
    assert isinstance(out[2], Utterance) and indices(out[2]) == list(range(0, 45))


def test_a_failing_model_is_a_typed_error_and_the_input_is_released() -> None:
    sch = TestScheduler()
    model = ScriptedModel(sch, [RuntimeError("onnx exploded")])
    run = run_virtual(detector(model), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted"]
    assert isinstance(run.error, AudioError) and "onnx exploded" in str(run.error)
    assert run.subscription == (0.0, pytest.approx(1.01))


def test_disposing_while_the_model_runs_cancels_the_question() -> None:
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.99], latency=0.5)
    run = run_virtual(detector(model), frames(PATTERN), dispose_at=1.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted"]  # the verdict (due at 1.40) never lands
    assert model.futures[0].cancelled()
    assert run.subscription == (0.0, 1.0)


@pytest.mark.parametrize("name", ["vad_stop_ms", "incomplete_stop_ms"])
@pytest.mark.parametrize("value", [0, -200])
def test_the_model_timings_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be positive"):
        turn_detector(**{name: value})


# Real speech, the real model: Silero VAD tags the frames, Smart Turn judges the pause.

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"


def with_quiet_after(tmp_path: Any, key: str, cut: float = 1.0) -> Any:
    """The recording (its first ``cut`` of it), then 2 s of a -60 dBFS noise floor, as a WAV file."""
    import numpy as np

    from rxkit.audio.wav import read_wav, write_wav
    from rxkit.elements import AudioFrame

    speech = np.frombuffer(read_wav(LIBRIVOX.format(key)).pcm, dtype=np.int16)
    speech = speech[: int(len(speech) * cut)]
    noise = np.random.default_rng(14).normal(0, 33, 32000).astype(np.int16)
    path = tmp_path / f"{key}-{cut}.wav"
    write_wav(path, AudioFrame(np.concatenate([speech, noise]).tobytes(), 16000, 1))
    return path


def turn_ends(path: Any, **kwargs: Any) -> list[tuple[str, float]]:
    """(reason, ms from the end of speech to the frame at which the turn was ended), per turn of the file."""
    from rxkit.audio.wav import wav_source
    from rxkit.elements import VadFrame
    from rxkit.operators import vad

    out: list[Any] = []
    wav_source(path).pipe(vad(), turn_detector(frames=True, **kwargs)).subscribe(out.append)
    ends = []
    for i, e in enumerate(out):
        if isinstance(e, SpeechStopped):
            last = out[i - 1]
            assert isinstance(last, VadFrame)
            ends.append((e.reason, round((last.timestamp + last.duration - e.timestamp) * 1000)))
    return ends


@pytest.fixture(scope="module")
def smart_turn() -> Any:
    from rxkit.audio.turn_model import SmartTurn

    with SmartTurn() as model:
        yield model


@pytest.mark.parametrize("key", ["0870", "0890", "0920"])
def test_real_speech_a_complete_sentence_ends_at_the_short_pause(tmp_path: Any, smart_turn: Any, key: str) -> None:
    path = with_quiet_after(tmp_path, key)
    assert turn_ends(path, stop_ms=700) == [("silence", 700)]
    assert turn_ends(path, stop_ms=700, end_of_turn=smart_turn, wait_for_model=True) == [("end_of_turn_model", 200)]


def test_real_speech_cut_mid_clause_waits_for_the_fallback(tmp_path: Any, smart_turn: Any) -> None:
    path = with_quiet_after(tmp_path, "0920", cut=0.6)  # "had he married a more amiable woman he might ha-"
    assert turn_ends(path, end_of_turn=smart_turn, wait_for_model=True) == [("silence", 1500)]


async def test_on_the_event_loop_the_model_runs_off_it_and_frames_keep_flowing(smart_turn: Any) -> None:
    """Live shape: frames every 20 ms on the loop; the verdict comes back on the loop's thread, no thread left."""
    import asyncio
    import threading

    import numpy as np
    from reactivex.scheduler.eventloop import AsyncIOScheduler
    from reactivex.subject import Subject

    from rxkit.audio.wav import read_wav
    from rxkit.elements import AudioFrame, VadFrame
    from rxkit.operators import vad
    from rxkit.testing import ano_leaks

    speech = read_wav(LIBRIVOX.format("0890")).pcm
    quiet = np.random.default_rng(14).normal(0, 33, 320).astype(np.int16).tobytes()
    loop_thread = threading.current_thread()
    out: list[tuple[Any, bool]] = []
    asked_at: list[int] = []

    class Spy:  # the real model; notes how much had come out when it was asked
        threshold = smart_turn.threshold

        def submit(self, pcm: bytes, rate: int, channels: int) -> Any:
            asked_at.append(len(out))
            return smart_turn.submit(pcm, rate, channels)

    async with ano_leaks(grace=10):
        feed: Subject[Any] = Subject()
        detector = turn_detector(stop_ms=60_000, end_of_turn=Spy(), frames=True)  # only the model can end it
        sub = feed.pipe(vad(), detector).subscribe(
            lambda e: out.append((e, threading.current_thread() is loop_thread)),
            scheduler=AsyncIOScheduler(asyncio.get_running_loop()),
        )
        n = 0
        for i in range(0, len(speech), 640):
            feed.on_next(AudioFrame(speech[i : i + 640], 16000, 1, n * 0.02))
            n += 1
        while not any(isinstance(e, SpeechStopped) for e, _ in out) and n < 3000:  # 60 s of quiet at most
            feed.on_next(AudioFrame(quiet, 16000, 1, n * 0.02))
            n += 1
            await asyncio.sleep(0.02)
        feed.on_completed()
        sub.dispose()
    stops = [(i, e) for i, (e, _) in enumerate(out) if isinstance(e, SpeechStopped)]
    assert [e.reason for _, e in stops] == ["end_of_turn_model"]
    assert all(on_loop for _, on_loop in out)  # every element, the verdict's too, on the loop's thread
    # Frames went on while the model worked (one inference takes 270 ms of CPU here, frames come every 20 ms).
    (asked,) = asked_at
    assert any(isinstance(e, VadFrame) for e, _ in out[asked : stops[0][0]])


# --- tentative ends (preemptive generation) ---


def test_a_tentative_end_goes_out_when_the_model_is_asked_and_the_verdict_confirms_it() -> None:
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9])
    run = run_virtual(detector(model, tentative=True), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "TentativeEnd", "SpeechStopped", "Utterance"]
    tentative = run.values[1]
    # At the question (0.90), 110 ms before the verdict; stamped where the speech stopped, as SpeechStopped is.
    assert run.times[1] == pytest.approx(0.90) and run.times[2] == pytest.approx(1.01)
    assert (tentative.timestamp, tentative.text) == (pytest.approx(0.70), "")
    assert run.values[2].timestamp == tentative.timestamp


def test_speech_after_a_tentative_end_withdraws_it_and_the_next_pause_gets_its_own() -> None:
    # Heard as unfinished at the first pause; the user goes on after 1 s, then stops for good.
    pattern = "0" * 5 + "1" * 30 + "0" * 50 + "1" * 20 + "0" * 40
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.2, 0.9])
    run = run_virtual(detector(model, tentative=True), frames(pattern), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == [
        "SpeechStarted", "TentativeEnd", "SpeechResumed", "TentativeEnd", "SpeechStopped", "Utterance"
    ]  # fmt: skip
    # The first speech frame again is frame 85 (t=1.70), arriving at 1.72; the second pause is asked at 2.30.
    assert run.times[1:5] == [pytest.approx(0.90), pytest.approx(1.72), pytest.approx(2.30), pytest.approx(2.41)]
    assert run.values[2].timestamp == pytest.approx(1.70) and run.values[3].timestamp == pytest.approx(2.10)


def test_without_a_model_the_tentative_end_comes_at_vad_stop_ms_long_before_stop_ms() -> None:
    run = run_virtual(detector(None, tentative=True), frames(PATTERN), complete_at=5.0)
    assert kinds(run.values) == ["SpeechStarted", "TentativeEnd", "SpeechStopped", "Utterance"]
    assert run.times[1] == pytest.approx(0.90) and run.times[2] == pytest.approx(1.40)  # 200 ms, then 700 ms


def test_no_tentative_end_for_a_turn_too_short_to_keep_nor_without_asking_for_it() -> None:
    short = "0" * 5 + "1" * 12 + "0" * 60  # 240 ms of speech: less than min_speech_ms=300
    run = run_virtual(detector(None, tentative=True, min_speech_ms=300), frames(short), complete_at=5.0)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped"] and run.values[1].discarded
    sch = TestScheduler()
    run = run_virtual(detector(ScriptedModel(sch, [0.9])), frames(PATTERN), complete_at=5.0, scheduler=sch)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]  # tentative=False: as before


def test_at_most_three_tentative_ends_per_turn_and_none_past_ten_seconds() -> None:
    # Five 300 ms pauses in one turn (stop_ms 700): tentative ends at the first three only.
    pattern = "0" * 5 + ("1" * 30 + "0" * 15) * 5 + "1" * 30 + "0" * 40
    run = run_virtual(detector(None, tentative=True), frames(pattern), complete_at=10.0)
    assert kinds(run.values) == ["SpeechStarted", *["TentativeEnd", "SpeechResumed"] * 3, "SpeechStopped", "Utterance"]
    # 11 s of speech, then a pause: too long a turn for one.
    run = run_virtual(detector(None, tentative=True), frames("0" * 5 + "1" * 550 + "0" * 40), complete_at=20.0)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]


def test_tentative_ms_starts_the_reply_sooner_than_the_model_is_asked() -> None:
    # 20 ms frames: with tentative_ms=100 the tentative end goes out at the 5th silent frame (0.80), the model is
    # still asked at 200 ms (0.90) and its verdict ends the turn 110 ms later, as without it.
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9])
    run = run_virtual(detector(model, tentative=True, tentative_ms=100), frames(PATTERN), complete_at=5.0,
                      scheduler=sch)  # fmt: skip
    assert kinds(run.values) == ["SpeechStarted", "TentativeEnd", "SpeechStopped", "Utterance"]
    assert run.times[1] == pytest.approx(0.80) and run.times[2] == pytest.approx(1.01)
    assert [when for when, _ in model.asked] == [pytest.approx(0.90)]
    # A 120 ms pause inside the turn: a tentative end and its withdrawal, and no question to the model.
    pattern = "0" * 5 + "1" * 30 + "0" * 6 + "1" * 20 + "0" * 40
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9])
    run = run_virtual(detector(model, tentative=True, tentative_ms=100), frames(pattern), complete_at=5.0,
                      scheduler=sch)  # fmt: skip
    assert kinds(run.values) == [
        "SpeechStarted", "TentativeEnd", "SpeechResumed", "TentativeEnd", "SpeechStopped", "Utterance"
    ]  # fmt: skip
    assert [when for when, _ in model.asked] == [pytest.approx(1.42)]  # only at the last pause, 200 ms into it


@pytest.mark.parametrize("bad", [0, -5, 250])
def test_tentative_ms_must_be_positive_and_at_most_vad_stop_ms(bad: float) -> None:
    with pytest.raises(ConfigError, match="tentative_ms"):
        turn_detector(vad_stop_ms=200, tentative_ms=bad)


def test_three_short_pauses_spend_the_early_tentative_ends_and_the_real_end_still_gets_one() -> None:
    # Three 120 ms pauses (tentative_ms=100: a tentative end and its withdrawal each), then the end: its tentative
    # end comes at 200 ms of silence (vad_stop_ms), with the model's question, not at 100 ms.
    pattern = "0" * 5 + ("1" * 20 + "0" * 6) * 3 + "1" * 20 + "0" * 40
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.9])
    run = run_virtual(detector(model, tentative=True, tentative_ms=100), frames(pattern), complete_at=5.0,
                      scheduler=sch)  # fmt: skip
    assert kinds(run.values) == [
        "SpeechStarted", *["TentativeEnd", "SpeechResumed"] * 3, "TentativeEnd", "SpeechStopped", "Utterance"
    ]  # fmt: skip
    last_pause = (5 + 26 * 3 + 20) * 0.02  # where the last silence starts
    assert run.times[7] == pytest.approx(last_pause + 0.20)  # at 200 ms of it, as the model is asked
    # Four pauses of 220 ms each reach vad_stop_ms: 3 early ones (at 100 ms), then up to 3 more at 200 ms; a
    # seventh pause gets none.
    pattern = "0" * 5 + ("1" * 20 + "0" * 11) * 7 + "1" * 20 + "0" * 40
    sch = TestScheduler()
    model = ScriptedModel(sch, [0.2] * 7 + [0.9])
    run = run_virtual(detector(model, tentative=True, tentative_ms=100), frames(pattern), complete_at=8.0,
                      scheduler=sch)  # fmt: skip
    assert kinds(run.values).count("TentativeEnd") == 6
