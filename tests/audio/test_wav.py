"""WAV source (as fast as possible, or paced in real time) and WAV sink."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import reactivex
import reactivex.operators as ops
from reactivex.testing import TestScheduler

from rxkit.audio.wav import read_wav, wav_info, wav_sink, wav_source, write_wav
from rxkit.elements import AudioFrame, EndOfTurn, TextDelta
from rxkit.errors import AudioError, ConfigError
from rxkit.testing import no_leaks, run_virtual


def _tone(path: Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    n = int(rate * seconds)
    mono = (np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 8000).astype(np.int16)
    pcm = np.repeat(mono, channels).tobytes()
    write_wav(path, AudioFrame(pcm, rate, channels))
    return pcm


def _virtual(source: reactivex.Observable[AudioFrame], dispose_at: float | None = None) -> tuple[list, TestScheduler]:
    sch = TestScheduler()
    seen: list[tuple[float, object]] = []
    sub = source.subscribe(lambda x: seen.append((sch.clock, x)), on_completed=lambda: seen.append((sch.clock, "done")),
                           scheduler=sch)  # fmt: skip
    if dispose_at is not None:
        sch.schedule_absolute(dispose_at, lambda *_: sub.dispose())
    sch.start()
    return seen, sch


def test_as_fast_as_possible_emits_every_frame_at_once_with_file_offsets(tmp_path: Path) -> None:
    pcm = _tone(tmp_path / "t.wav", 1.01)
    seen, _ = _virtual(wav_source(tmp_path / "t.wav", frame_ms=20))
    frames = [x for _, x in seen if isinstance(x, AudioFrame)]
    assert {t for t, _ in seen} == {0.0}  # no waiting
    assert seen[-1][1] == "done"
    assert len(frames) == 51 and len(frames[-1].pcm) == 320  # 50 whole frames, then 10 ms
    assert b"".join(f.pcm for f in frames) == pcm
    assert [f.timestamp for f in frames[:3]] == [0.0, 0.02, 0.04]
    assert (frames[0].sample_rate, frames[0].channels) == (16000, 1)


def test_realtime_paces_frames_like_a_microphone(tmp_path: Path) -> None:
    _tone(tmp_path / "t.wav", 0.1)
    seen, _ = _virtual(wav_source(tmp_path / "t.wav", frame_ms=20, realtime=True))
    times = [round(t, 6) for t, x in seen if isinstance(x, AudioFrame)]
    assert times == [0.02, 0.04, 0.06, 0.08, 0.1]  # each frame once it would have been recorded
    assert seen[-1] == (pytest.approx(0.12), "done")


def test_dispose_stops_a_realtime_source_and_closes_the_file(tmp_path: Path) -> None:
    _tone(tmp_path / "t.wav", 1.0)
    with no_leaks(grace=0.5, check_fds=True):
        seen, _ = _virtual(wav_source(tmp_path / "t.wav", realtime=True), dispose_at=0.105)
    assert len(seen) == 5 and "done" not in [x for _, x in seen]


def test_realtime_source_runs_on_the_asyncio_loop(tmp_path: Path) -> None:
    _tone(tmp_path / "t.wav", 0.2)
    import asyncio

    async def main() -> list[AudioFrame]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        frames = await wav_source(tmp_path / "t.wav", realtime=True).pipe(ops.to_list())
        assert loop.time() - t0 >= 0.19  # paced: a lower bound only, never an upper one
        return frames

    assert len(asyncio.run(main())) == 10


def test_frame_size_is_configurable_and_stereo_is_kept(tmp_path: Path) -> None:
    pcm = _tone(tmp_path / "s.wav", 0.3, rate=22050, channels=2)
    frames = wav_source(tmp_path / "s.wav", frame_ms=30).pipe(ops.to_list()).run()
    assert len(frames[0].pcm) == 662 * 2 * 2  # round(22050 * 0.03) samples, 2 channels
    assert frames[0].channels == 2 and frames[0].sample_rate == 22050
    assert b"".join(f.pcm for f in frames) == pcm


def test_missing_and_unsupported_files_fail_before_anything_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such WAV file"):
        wav_source(tmp_path / "nope.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not a wav file at all")
    with pytest.raises(ConfigError, match="not a WAV file"):
        wav_source(tmp_path / "junk.wav")
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 800)
    with pytest.raises(ConfigError, match="8-bit audio; rxkit reads 16-bit PCM"):
        wav_source(tmp_path / "8bit.wav")


def test_a_file_removed_after_the_call_fails_the_subscription(tmp_path: Path) -> None:
    _tone(tmp_path / "t.wav", 0.1)
    source = wav_source(tmp_path / "t.wav")
    (tmp_path / "t.wav").unlink()
    run = run_virtual(lambda _: source)
    assert isinstance(run.error, ConfigError)


def test_sink_writes_what_it_gets_and_closes_the_file_at_completion(tmp_path: Path, librivox: list[Path]) -> None:
    out = tmp_path / "copy.wav"
    with no_leaks(grace=0.5, check_fds=True):
        result = wav_source(librivox[1]).pipe(wav_sink(out), ops.to_list()).run()
    assert result == []  # a sink: the audio stays in the file
    assert read_wav(out).pcm == read_wav(librivox[1]).pcm
    assert wav_info(out).sample_rate == 16000


def test_sink_passes_other_elements_and_converts_frames_to_the_file_format(tmp_path: Path) -> None:
    out = tmp_path / "o.wav"
    chunk = AudioFrame(b"\x10\x00" * 480, 48000, 1)
    frames = [chunk, TextDelta("hi"), chunk, EndOfTurn()]
    result = reactivex.from_iterable(frames).pipe(wav_sink(out, sample_rate=16000), ops.to_list()).run()
    assert result == [TextDelta("hi"), EndOfTurn()]
    info = wav_info(out)
    assert info.sample_rate == 16000 and abs(info.duration - 0.02) < 0.001


def test_sink_passthrough_records_a_tap(tmp_path: Path) -> None:
    frames = [AudioFrame(b"\x01\x00" * 160, 16000) for _ in range(3)]
    result = reactivex.from_iterable(frames).pipe(wav_sink(tmp_path / "tap.wav", passthrough=True), ops.to_list()).run()
    assert result == frames
    assert read_wav(tmp_path / "tap.wav").pcm == b"\x01\x00" * 480


def test_sink_without_audio_still_writes_a_valid_empty_file(tmp_path: Path) -> None:
    assert reactivex.empty().pipe(wav_sink(tmp_path / "e.wav"), ops.to_list()).run() == []
    info = wav_info(tmp_path / "e.wav")
    assert (info.frames, info.sample_rate, info.channels) == (0, 16000, 1)


def test_sink_keeps_what_was_written_when_the_input_fails(tmp_path: Path) -> None:
    out = tmp_path / "partial.wav"
    run = run_virtual(wav_sink(out), [(0.1, AudioFrame(b"\x01\x00" * 160, 16000))], error_at=(0.2, RuntimeError("x")))
    assert isinstance(run.error, RuntimeError)
    assert read_wav(out).pcm == b"\x01\x00" * 160  # closed: the header is complete


def test_sink_into_a_missing_directory_is_an_audio_error(tmp_path: Path) -> None:
    run = run_virtual(wav_sink(tmp_path / "no" / "such" / "dir.wav"), [(0.1, AudioFrame(b"\0\0", 16000))],
                      complete_at=0.2)  # fmt: skip
    assert isinstance(run.error, AudioError)
    assert run.subscription == (0.0, 0.1)  # it stopped listening at the failure
