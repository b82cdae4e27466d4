"""The vad() stage: frames tagged speech / non-speech, re-framed to VAD frame sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex.operators as ops

from rxkit.audio.wav import read_wav, wav_source
from rxkit.elements import AudioFrame, EndOfTurn, Interrupt, SpeechStarted, TextDelta, VadFrame
from rxkit.errors import ConfigError
from rxkit.graph.stage import StageKind
from rxkit.operators import vad
from rxkit.testing import run_virtual

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")


def _frames(pcm: bytes, size: int, rate: int = 16000, dt: float = 0.02) -> list[tuple[float, AudioFrame]]:
    return [(0.1 + k * dt, AudioFrame(pcm[i : i + size], rate, 1, i / (2 * rate))) for k, i in
            enumerate(range(0, len(pcm), size))]  # fmt: skip


def test_it_is_a_named_transform_stage() -> None:
    stage = vad()
    assert stage.name == "vad" and stage.kind is StageKind.TRANSFORM


def test_frames_of_the_vad_size_are_tagged_one_for_one_without_copying() -> None:
    frame = AudioFrame(bytes(640), 16000, 1, 3.0)
    run = run_virtual(vad(2, 20), [(0.1, frame)], complete_at=0.2)
    [out] = run.values
    assert isinstance(out, VadFrame) and out.speech is False
    assert out.pcm is frame.pcm and out.timestamp == 3.0 and out.sample_rate == 16000
    assert run.times == [0.1] and run.completed_at == 0.2 and run.subscription == (0.0, 0.2)


def test_blocks_of_any_size_are_reframed_with_exact_timestamps() -> None:
    pcm = bytes(range(256)) * 25  # 6400 bytes = 200 ms at 16 kHz
    run = run_virtual(vad(1, 30), _frames(pcm, 222), complete_at=1.0)
    frames = [v for v in run.values if isinstance(v, VadFrame)]
    assert [len(f.pcm) for f in frames] == [960] * 6 + [640]  # six 30 ms frames, then the 20 ms left at the end
    assert b"".join(f.pcm for f in frames) == pcm  # nothing lost, nothing reordered
    assert [round(f.timestamp, 6) for f in frames] == [0.0, 0.03, 0.06, 0.09, 0.12, 0.15, 0.18]
    assert run.times[-1] == 1.0  # the partial frame comes out at completion


def test_real_speech_is_tagged_as_speech_and_the_silence_around_it_is_not() -> None:
    audio = read_wav(SPEECH).pcm
    silence = bytes(16000)  # 0.5 s
    pcm = silence + audio + silence
    frames = run_virtual(vad(2, 20), _frames(pcm, 640), complete_at=100.0).values
    tags = np.array([f.speech for f in frames])
    assert not tags[:25].any() and not tags[-25:].any()
    assert tags[25:-25].mean() > 0.5


def test_control_and_other_elements_pass_through_in_order() -> None:
    events = [(0.1, TextDelta("a")), (0.2, AudioFrame(bytes(320), 16000)), (0.3, Interrupt()), (0.4, EndOfTurn()),
              (0.5, SpeechStarted(1.0))]  # fmt: skip
    run = run_virtual(vad(), events, complete_at=0.6)
    assert run.values == [TextDelta("a"), Interrupt(), EndOfTurn(), SpeechStarted(1.0),
                          VadFrame(bytes(320), 16000, 1, 0.0, False)]  # fmt: skip


def test_numpy_frames_are_accepted() -> None:
    run = run_virtual(vad(), [(0.1, AudioFrame(np.zeros(320, dtype=np.int16), 16000, 1, 0.0))])
    assert run.values[0].pcm == bytes(640)


def test_a_rate_change_starts_a_fresh_detector() -> None:
    events = [(0.1, AudioFrame(bytes(100), 16000)), (0.2, AudioFrame(bytes(960), 48000, 1, 5.0))]
    run = run_virtual(vad(), events, complete_at=0.3)
    assert [(len(f.pcm), f.sample_rate) for f in run.values] == [(100, 16000), (960, 48000)]


@pytest.mark.parametrize(
    ("frame", "message"),
    [(AudioFrame(bytes(1280), 16000, 2), "mono"), (AudioFrame(bytes(882), 44100, 1), "44100")],
)
def test_audio_vad_cannot_judge_fails_the_stream_with_a_config_error(frame: AudioFrame, message: str) -> None:
    run = run_virtual(vad(), [(0.1, frame)], complete_at=0.5)
    assert isinstance(run.error, ConfigError) and message in str(run.error)
    assert run.subscription == (0.0, 0.1)


def test_bad_settings_fail_when_the_stage_is_built() -> None:
    with pytest.raises(ConfigError):
        vad(aggressiveness=7)
    with pytest.raises(ConfigError):
        vad(frame_ms=25)


def test_runs_over_a_wav_file_as_fast_as_possible() -> None:
    frames = wav_source(SPEECH, frame_ms=10).pipe(vad(3, 30), ops.to_list()).run()
    assert sum(len(f.pcm) for f in frames) == len(read_wav(SPEECH).pcm)
    assert any(f.speech for f in frames)
