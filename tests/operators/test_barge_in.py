"""barge_in(): confirmed speech cuts the reply; a false alarm (cough, click) pauses it and resumes it. Virtual time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rxkit.elements import SpeechStarted, SpeechStopped, Utterance, VadFrame
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.operators import BargeIn, FalseInterruption, barge_in, turn_detector, vad
from rxkit.telemetry.events import EventBus, UserSpeechEnded
from rxkit.testing import run_virtual
from tests.audio.noise import cough, with_silence


def frames(pattern: str, start: float = 0.0, ms: int = 20) -> list[tuple[float, VadFrame]]:
    """``"sss..."``: one 20 ms VadFrame per letter, s = speech; each at its own audio time."""
    pcm = bytes(32 * ms)
    return [
        (start + i * ms / 1000, VadFrame(pcm, 16000, 1, start + i * ms / 1000, c == "s")) for i, c in enumerate(pattern)
    ]


def busy_floor() -> tuple[Floor, list[bool]]:
    floor = Floor(EventBus())
    floor.reply_accepted(object(), 1)  # a reply in flight
    paused: list[bool] = []
    floor.on_pause = paused.append  # what playout hands the speaker
    return floor, paused


def test_confirmed_speech_cuts_the_reply_on_the_frame_that_confirms_it() -> None:
    floor, paused = busy_floor()
    events: list[tuple[float, Any]] = [(0.2, SpeechStarted(0.2)), *frames("s" * 30, 0.2)]
    run = run_virtual(barge_in(floor, confirm_ms=500), events, complete_at=1.0)
    cut = next(i for i, x in enumerate(run.values) if isinstance(x, BargeIn))
    assert run.values[cut + 1].timestamp == pytest.approx(0.68)  # the 25th frame: 500 ms of speech
    assert run.times[cut] == pytest.approx(0.68)
    assert paused == [True]  # paused at the SpeechStarted, never resumed: the BargeIn flushes instead
    assert not floor.busy and sum(isinstance(x, BargeIn) for x in run.values) == 1
    assert run.subscription == (0.0, 1.0)


def test_a_cough_pauses_the_reply_then_resumes_it_and_its_turn_is_dropped() -> None:
    floor, paused = busy_floor()
    utterance = Utterance(bytes(640), 16000)
    events: list[tuple[float, Any]] = [
        (0.2, SpeechStarted(0.2)), *frames("s" * 16 + "n" * 25, 0.2), (1.1, SpeechStopped(0.52, 0.32)), (1.1, utterance)
    ]  # fmt: skip
    run = run_virtual(barge_in(floor, confirm_ms=500, resume_ms=400), events, complete_at=1.5)
    assert not any(isinstance(x, BargeIn) for x in run.values)
    (false,) = [i for i, x in enumerate(run.values) if isinstance(x, FalseInterruption)]
    assert run.values[false].speech_s == pytest.approx(0.32)
    assert run.times[false] == pytest.approx(0.52 + 0.4 - 0.02)  # after 400 ms of quiet, not at the SpeechStopped
    assert paused == [True, False]
    stopped = [x for x in run.values if isinstance(x, SpeechStopped)]
    assert stopped == [SpeechStopped(0.52, 0.32, "silence", discarded=True)]  # no transcript: the question stays
    assert utterance not in run.values
    assert floor.busy  # the reply goes on
    assert floor.bus.events(UserSpeechEnded) == []


def test_speech_that_goes_on_after_a_false_alarm_still_cuts() -> None:
    floor, paused = busy_floor()
    events: list[tuple[float, Any]] = [(0.2, SpeechStarted(0.2)), *frames("s" * 12 + "n" * 15 + "s" * 20, 0.2)]
    run = run_virtual(barge_in(floor, confirm_ms=500, resume_ms=200), events, complete_at=2.0)
    kinds = [type(x) for x in run.values if isinstance(x, (BargeIn, FalseInterruption))]
    assert kinds == [FalseInterruption, BargeIn]
    assert paused == [True, False]


def test_a_turn_without_frames_is_confirmed_by_its_length() -> None:
    floor, _ = busy_floor()
    run = run_virtual(barge_in(floor, confirm_ms=500), [(0.2, SpeechStarted(0.0)), (1.5, SpeechStopped(1.0, 0.8))])
    assert [type(x) for x in run.values] == [SpeechStarted, BargeIn, SpeechStopped]
    floor, paused = busy_floor()
    run = run_virtual(barge_in(floor, confirm_ms=500), [(0.2, SpeechStarted(0.0)), (1.5, SpeechStopped(1.0, 0.3))])
    assert [type(x) for x in run.values] == [SpeechStarted, FalseInterruption, SpeechStopped]
    assert run.values[-1].discarded and paused == [True, False]


def test_after_sentence_does_not_pause_and_an_idle_assistant_is_not_interrupted() -> None:
    floor, paused = busy_floor()
    run = run_virtual(barge_in(floor, "after_sentence", confirm_ms=100), [SpeechStarted(0.0), *frames("sssss")])
    assert [x.strategy for x in run.values if isinstance(x, BargeIn)] == ["after_sentence"] and paused == []
    idle = Floor(EventBus())
    run = run_virtual(barge_in(idle, confirm_ms=100), [SpeechStarted(0.0), *frames("sssss")])
    assert not any(isinstance(x, (BargeIn, FalseInterruption)) for x in run.values)


def test_bad_confirmation_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="confirm_ms >= 0 and resume_ms > 0"):
        barge_in(Floor(), confirm_ms=-1)
    with pytest.raises(ConfigError, match="confirm_ms >= 0 and resume_ms > 0"):
        barge_in(Floor(), resume_ms=0)


@pytest.mark.parametrize("engine", ["silero", "webrtc"])
def test_a_real_cough_over_the_reply_never_cuts_it(engine: str) -> None:
    """The whole front end on a generated cough: Silero hears nothing; webrtcvad hears a turn, judged false."""
    from rxkit.elements import AudioFrame

    pcm = with_silence(cough(250, seed=3), before_s=0.6, after_s=1.5).tobytes()
    blocks = [(i / 32000, AudioFrame(pcm[i : i + 640], 16000, 1, i / 32000)) for i in range(0, len(pcm) - 639, 640)]
    floor, paused = busy_floor()
    stages = [vad(engine=engine), turn_detector(frames=True), barge_in(floor, confirm_ms=500)]

    def chain(source: Any) -> Any:
        return source.pipe(*stages)

    run = run_virtual(chain, blocks, complete_at=3.0)
    assert not any(isinstance(x, (BargeIn, Utterance)) for x in run.values)
    assert all(x.discarded for x in run.values if isinstance(x, SpeechStopped))
    if engine == "silero":
        assert paused == [] and not any(isinstance(x, SpeechStarted) for x in run.values)
    else:  # webrtcvad took it for speech: paused, then resumed
        assert paused == [True, False] and any(isinstance(x, FalseInterruption) for x in run.values)
    assert floor.busy
    assert np.frombuffer(pcm, dtype=np.int16).size == 16000 * 2.35
