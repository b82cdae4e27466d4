"""turn_detector(): speech events and utterances from VAD-tagged frames, on virtual time and on real speech."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import reactivex.operators as ops

from rxkit.audio.wav import read_wav, wav_source, write_wav
from rxkit.elements import AudioFrame, EndOfStream, EndOfTurn, Interrupt, Utterance, VadFrame
from rxkit.errors import ConfigError
from rxkit.operators import turn_detector, vad
from rxkit.testing import run_virtual

FRAME = 0.02  # 20 ms frames, arriving every 20 ms of virtual time
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def frames(pattern: str, start: float = 0.0) -> list[tuple[float, VadFrame]]:
    """One 20 ms frame per character ('1' speech, '0' not), frame i arriving at (i + 1) * 20 ms.

    Each frame's PCM is its index repeated, so an utterance's audio shows which frames it holds.
    """
    out = []
    for i, c in enumerate(pattern):
        ts = start + i * FRAME
        out.append((round(ts + FRAME, 6), VadFrame(bytes([i % 256]) * 640, 16000, 1, round(ts, 6), c == "1")))
    return out


def indices(u: Utterance) -> list[int]:
    return list(u.pcm[::640])


def kinds(values: list[Any]) -> list[str]:
    return [type(v).__name__ for v in values]


def test_a_turn_with_pre_roll_start_and_stop_times() -> None:
    pattern = "0" * 20 + "1" * 30 + "0" * 40
    run = run_virtual(
        turn_detector(start_ms=200, stop_ms=300, min_speech_ms=100, pre_roll_ms=100), frames(pattern), complete_at=5.0
    )
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    started, stopped, utt = run.values
    # Speech began with frame 20 (t=0.40); 200 ms of it is reached with frame 29, which arrives at 0.60.
    assert run.times[0] == pytest.approx(0.60)
    assert started.timestamp == pytest.approx(0.40)
    # Silence began with frame 50 (t=1.00); 300 ms of it is reached with frame 64, arriving at 1.30.
    assert run.times[1] == run.times[2] == pytest.approx(1.30)
    assert stopped.timestamp == pytest.approx(1.00)
    assert (stopped.speech_s, stopped.reason, stopped.discarded) == (pytest.approx(0.6), "silence", False)
    # Audio: 100 ms of pre-roll (frames 15-19), the speech, and the closing silence (frames 50-64).
    assert indices(utt) == list(range(15, 65))
    assert utt.timestamp == pytest.approx(0.30) and utt.sample_rate == 16000 and utt.reason == "silence"
    assert utt.duration == pytest.approx(1.0)
    assert run.completed_at == 5.0 and run.subscription == (0.0, 5.0)


def test_a_blip_shorter_than_start_ms_starts_nothing() -> None:
    run = run_virtual(turn_detector(start_ms=200), frames("0" * 5 + "1" * 9 + "0" * 5 + "1" * 9 + "0" * 50),
                      complete_at=3.0)  # fmt: skip
    assert run.values == [] and run.completed_at == 3.0


def test_a_pause_shorter_than_stop_ms_keeps_the_turn_going() -> None:
    run = run_virtual(turn_detector(start_ms=100, stop_ms=300), frames("1" * 20 + "0" * 14 + "1" * 20 + "0" * 15),
                      complete_at=3.0)  # fmt: skip
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert run.values[1].speech_s == pytest.approx(0.8)


def test_false_starts_become_pre_roll() -> None:
    # A 60 ms blip, a gap, then the real start: the blip is history and lands in the pre-roll.
    run = run_virtual(turn_detector(start_ms=100, stop_ms=100, min_speech_ms=0, pre_roll_ms=200),
                      frames("0" * 8 + "111" + "00" + "11111" + "00000"), complete_at=2.0)  # fmt: skip
    utt = run.values[-1]
    assert indices(utt) == list(range(3, 23))  # the 10 frames (200 ms) before frame 13, blip included
    assert run.values[0].timestamp == pytest.approx(13 * FRAME)


def test_speech_shorter_than_min_speech_is_discarded() -> None:
    run = run_virtual(turn_detector(start_ms=100, stop_ms=200, min_speech_ms=300), frames("1" * 10 + "0" * 20),
                      complete_at=2.0)  # fmt: skip
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped"]
    assert run.values[1].discarded is True and run.values[1].speech_s == pytest.approx(0.2)


def test_max_turn_cuts_a_long_turn_and_a_new_one_starts() -> None:
    run = run_virtual(turn_detector(start_ms=100, stop_ms=200, min_speech_ms=0, max_turn_s=1.0, pre_roll_ms=0),
                      frames("1" * 80 + "0" * 10), complete_at=3.0)  # fmt: skip
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"] * 2
    first, second = run.values[2], run.values[5]
    assert first.reason == "max_turn" and first.duration == pytest.approx(1.0)
    assert run.times[1] == pytest.approx(1.0)  # frame 49 ends the first second of the turn
    assert second.reason == "silence"
    assert indices(first) + indices(second) == list(range(0, 50)) + list(range(50, 90))


def test_the_end_of_the_input_ends_a_turn_in_progress() -> None:
    run = run_virtual(turn_detector(start_ms=100, min_speech_ms=0), frames("0" * 5 + "1" * 20), complete_at=0.7)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert run.values[2].reason == "end_of_stream" and run.times[-1] == 0.7
    assert run.values[1].timestamp == pytest.approx(25 * FRAME)  # speech ran to the last frame's end
    assert run.completed_at == 0.7


def test_end_of_stream_element_ends_the_turn_and_passes_on() -> None:
    events = [*frames("1" * 20), (0.5, EndOfStream())]
    run = run_virtual(turn_detector(start_ms=100, min_speech_ms=0), events)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance", "EndOfStream"]
    assert run.times[1:] == [0.5, 0.5, 0.5]


def test_a_stalled_source_ends_the_turn_after_stop_ms_of_scheduler_time() -> None:
    run = run_virtual(turn_detector(start_ms=100, stop_ms=300, min_speech_ms=0), frames("1" * 20), complete_at=10.0)
    assert kinds(run.values) == ["SpeechStarted", "SpeechStopped", "Utterance"]
    assert run.values[1].reason == "stalled"
    assert run.times[1] == pytest.approx(0.40 + 0.30)  # last frame at 0.40, then 300 ms of nothing


def test_frames_mode_streams_the_turn_audio_between_the_events() -> None:
    run = run_virtual(turn_detector(start_ms=60, stop_ms=60, min_speech_ms=0, pre_roll_ms=40, frames=True),
                      frames("0000" + "111" + "000" + "00"), complete_at=1.0)  # fmt: skip
    names = kinds(run.values)
    assert names == ["SpeechStarted"] + ["VadFrame"] * 8 + ["SpeechStopped", "Utterance"]
    streamed = [v.pcm[0] for v in run.values if isinstance(v, VadFrame)]
    assert streamed == indices(run.values[-1]) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert run.times[1:6] == pytest.approx([0.14] * 5)  # pre-roll and the first speech frames at the start


def test_control_elements_pass_through() -> None:
    events = [(0.01, Interrupt()), *frames("1" * 10), (0.3, EndOfTurn())]
    run = run_virtual(turn_detector(start_ms=100, min_speech_ms=0), events, complete_at=0.4)
    assert run.values[0] == Interrupt() and EndOfTurn() in run.values


def test_untagged_audio_is_a_config_error() -> None:
    run = run_virtual(turn_detector(), [(0.1, AudioFrame(bytes(640), 16000))], complete_at=1.0)
    assert isinstance(run.error, ConfigError) and "vad()" in str(run.error)
    assert run.subscription == (0.0, 0.1)


def test_dispose_mid_turn_cancels_the_stall_timer() -> None:
    run = run_virtual(turn_detector(start_ms=100), frames("1" * 20), dispose_at=0.45)
    assert kinds(run.values) == ["SpeechStarted"]  # no "stalled" end fired after dispose
    assert run.subscription == (0.0, 0.45)


@pytest.mark.parametrize("kwargs", [{"start_ms": 0}, {"stop_ms": -1}, {"max_turn_s": 0}, {"pre_roll_ms": -5}])
def test_bad_settings_fail_when_built(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        turn_detector(**kwargs)


def test_works_without_a_scheduler_or_loop_on_a_file() -> None:
    source = wav_source(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav")
    out = source.pipe(vad(), turn_detector(), ops.to_list()).run()  # no event loop: no stall timer needed
    assert kinds(out).count("Utterance") == 1


def test_finds_each_sentence_in_real_recorded_speech(tmp_path: Path) -> None:
    """Five read sentences (LibriVox, from pocketsphinx-testdata) with 1.5 s pauses: five turns."""
    gap = bytes(2 * 24000)
    pcm, spans = gap, []
    for f in sorted(LIBRIVOX.glob("*.wav")):
        audio = read_wav(f).pcm
        spans.append((len(pcm) / 32000, (len(pcm) + len(audio)) / 32000))
        pcm += audio + gap
    write_wav(tmp_path / "talk.wav", AudioFrame(pcm, 16000))
    out = wav_source(tmp_path / "talk.wav").pipe(vad(2), turn_detector(stop_ms=700), ops.to_list()).run()
    assert kinds(out) == ["SpeechStarted", "SpeechStopped", "Utterance"] * 5
    for (begin, end), started, stopped, utt in zip(spans, out[0::3], out[1::3], out[2::3], strict=True):
        assert begin - FRAME <= started.timestamp < begin + 0.5  # speech starts soon after the recording does
        assert end - 0.6 < stopped.timestamp <= end + 0.1  # and ends near its end
        assert not stopped.discarded and utt.reason == "silence"
        assert utt.timestamp <= started.timestamp - 0.25  # 300 ms of pre-roll, minus a frame
        assert utt.timestamp + utt.duration >= stopped.timestamp + 0.6


def test_a_long_turn_is_split_at_a_pause_near_the_limit_never_inside_a_word() -> None:
    # words of 0.4 s with 40 ms pauses between them, 3.5 s in all; max_turn_s=3: split at the first pause after 2.4 s
    word = "1" * 20 + "00"
    pattern = "0" * 5 + word * 8
    run = run_virtual(turn_detector(start_ms=100, stop_ms=300, min_speech_ms=0, max_turn_s=3.0, pre_roll_ms=100),
                      frames(pattern), complete_at=10.0)  # fmt: skip
    first, second = [v for v in run.values if isinstance(v, Utterance)]
    assert first.reason == "max_turn"
    cut = indices(first)[-1]
    assert pattern[cut] == "0" and pattern[cut - 1] == "1"  # the turn ends on the pause right after a word
    assert 2.4 <= first.duration < 3.0
    second_frames = indices(second)
    assert second_frames[0] > cut and pattern[second_frames[0] : second_frames[0] + 1] in ("0", "1")
    heard = indices(first) + second_frames
    assert len(heard) == len(set(heard))  # no frame in both halves: no word twice
    assert [i for i, c in enumerate(pattern) if c == "1" and i > cut] == [i for i in second_frames if pattern[i] == "1"]
