"""Format conversion: bytes <-> arrays, int16 <-> float32, channels, resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxkit.audio.convert import (
    FrameConverter,
    Resampler,
    as_array,
    as_bytes,
    convert_frame,
    float32_to_int16,
    int16_to_float32,
    remix,
    resample,
    to_mono,
)
from rxkit.elements import AudioFrame
from rxkit.errors import ConfigError
from tests.audio.pulse import dominant_frequency


def sine(freq: float, rate: int, seconds: float = 1.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


@pytest.mark.parametrize(
    ("freq", "src", "dst"),
    [(440, 48000, 16000), (440, 16000, 22050), (1000, 22050, 16000), (300, 8000, 48000), (3000, 44100, 16000)],
)
def test_resampling_keeps_the_frequency_length_and_level(freq: int, src: int, dst: int) -> None:
    out = resample(sine(freq, src), src, dst)
    assert out.dtype == np.int16
    assert len(out) == dst  # one second in, one second out
    assert abs(dominant_frequency(out, dst) - freq) <= 2
    assert 7600 < np.abs(out[100:-100]).max() <= 8100


def test_downsampling_filters_out_what_the_new_rate_cannot_hold() -> None:
    # 10 kHz cannot exist at 16 kHz: without the low-pass it would alias to 6 kHz at full level.
    out = resample(sine(10_000, 48000), 48000, 16000)
    assert np.abs(out[100:-100]).max() < 200


def test_streaming_in_blocks_equals_resampling_at_once() -> None:
    tone = sine(440, 48000, 2.0)
    whole = Resampler(48000, 16000).process_array(tone)
    r = Resampler(48000, 16000)
    sizes = [960, 7, 1, 2000, 333] * 100
    parts, i = [], 0
    for n in sizes:
        parts.append(r.process_array(tone[i : i + n]))
        i += n
    streamed = np.concatenate(parts)
    assert i >= len(tone)
    assert np.array_equal(streamed, whole[: len(streamed)])
    assert abs(len(streamed) - len(whole)) <= 1


def test_streaming_resampler_does_not_drift_over_long_input() -> None:
    r = Resampler(44100, 16000)
    total = sum(len(r.process(b"\0\0" * 441)) // 2 for _ in range(6000))  # 60 s in 10 ms blocks
    assert abs(total - 60 * 16000) <= 1


def test_stereo_resampling_keeps_channels_apart() -> None:
    left, right = sine(440, 48000), sine(1000, 48000)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    out = resample(stereo, 48000, 16000, channels=2).reshape(-1, 2)
    assert abs(dominant_frequency(out[:, 0], 16000) - 440) <= 2
    assert abs(dominant_frequency(out[:, 1], 16000) - 1000) <= 2


def test_bytes_and_arrays() -> None:
    a = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    b = as_bytes(a)
    assert b == b"\x00\x00\x01\x00\xff\xff\xff\x7f\x00\x80"
    assert as_array(b).tolist() == a.tolist()
    assert as_bytes(b) is b  # bytes pass through untouched
    assert as_bytes(bytearray(b)) == b
    assert as_array(memoryview(b)).tolist() == a.tolist()
    with pytest.raises(ConfigError, match="even number"):
        as_array(b"\x00\x00\x01")
    with pytest.raises(ConfigError, match="bytes or a numpy array"):
        as_array("not audio")
    with pytest.raises(ConfigError, match="int16 or float"):
        as_array(np.zeros(3, dtype=np.int32))


def test_int16_float32_round_trip_and_clipping() -> None:
    a = np.array([0, 16384, -16384, 32767, -32768], dtype=np.int16)
    f = int16_to_float32(a)
    assert f.dtype == np.float32
    assert f.tolist() == pytest.approx([0.0, 0.5, -0.5, 32767 / 32768, -1.0])
    assert float32_to_int16(f).tolist() == a.tolist()
    assert float32_to_int16([2.0, -2.0]).tolist() == [32767, -32768]
    assert as_array(np.array([0.5], dtype=np.float32)).tolist() == [16384]  # float arrays are converted


def test_channel_mixing() -> None:
    stereo = np.array([100, 300, -2, 2, 10, 20], dtype=np.int16)
    assert to_mono(stereo, 2).tolist() == [200, 0, 15]
    assert remix(np.array([1, 2], dtype=np.int16), 1, 2).tolist() == [1, 1, 2, 2]
    assert remix(stereo, 2, 2) is not None and remix(stereo, 2, 2).tolist() == stereo.tolist()
    with pytest.raises(ConfigError):
        remix(stereo, 2, 0)


def test_frame_converter_passes_matching_frames_through_untouched() -> None:
    frame = AudioFrame(b"\x01\x00" * 320, 16000, 1, 1.5)
    conv = FrameConverter(16000, 1)
    assert conv(frame) is frame
    array_frame = AudioFrame(np.ones(320, dtype=np.int16), 16000, 1, 2.0)
    out = conv(array_frame)
    assert out.pcm == b"\x01\x00" * 320 and out.timestamp == 2.0


def test_frame_converter_resamples_and_downmixes_a_stream() -> None:
    tone = sine(440, 48000)
    stereo = np.repeat(tone, 2)
    conv = FrameConverter(16000, 1)
    frames = [AudioFrame(stereo[i : i + 1920].tobytes(), 48000, 2, i / 96000) for i in range(0, len(stereo), 1920)]
    out = [conv(f) for f in frames]
    assert all(f.sample_rate == 16000 and f.channels == 1 for f in out)
    pcm = np.frombuffer(b"".join(f.pcm for f in out), dtype=np.int16)
    assert abs(len(pcm) - 16000) <= 1
    assert abs(dominant_frequency(pcm, 16000) - 440) <= 2
    assert out[3].timestamp == frames[3].timestamp
    one = convert_frame(AudioFrame(tone.tobytes(), 48000), sample_rate=24000)
    assert one.sample_rate == 24000 and abs(one.duration - 1.0) < 0.01


def test_bad_rates_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Resampler(0, 16000)
    with pytest.raises(ConfigError):
        Resampler(16000, 8000, channels=0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-32768, 32767), max_size=300), st.sampled_from([8000, 11025, 16000, 22050, 48000]))
def test_resampler_never_fails_and_stays_in_range(samples: list[int], to_rate: int) -> None:
    out = Resampler(16000, to_rate).process_array(np.array(samples, dtype=np.int16))
    assert out.dtype == np.int16
    assert len(out) <= len(samples) * to_rate / 16000 + 2


def test_the_resampler_reuses_its_buffers_but_what_it_returns_stays_the_callers() -> None:
    # Equal blocks (the mic's 20 ms): the work buffers are made once, so a stream allocates no new array per
    # block; an array handed out by process_array is a copy, not the buffer the next block overwrites.
    r = Resampler(16000, 24000)
    tone = (np.sin(2 * np.pi * 440 * np.arange(3200) / 16000) * 8000).astype(np.int16)
    blocks = [r.process_array(tone[k : k + 320]) for k in range(0, 3200, 320)]
    buffers = {id(b) for w in r._work.values() for b in w}
    more = [r.process(tone[k : k + 320]) for k in range(0, 3200, 320)]
    assert {id(b) for w in r._work.values() for b in w} == buffers  # no new work buffer after the first blocks
    assert len(r._work) <= 2
    once = resample(np.concatenate([tone, tone]), 16000, 24000)
    streamed = np.concatenate([*blocks, *(np.frombuffer(m, dtype="<i2") for m in more)])
    assert np.array_equal(streamed[: len(once)], once[: len(streamed)])
    assert not np.shares_memory(blocks[0], blocks[1])


@pytest.mark.parametrize(("rate", "channels"), [(48000, 1), (44100, 1)])  # the mic's own: mono
def test_downsampling_a_stream_of_equal_blocks_allocates_no_array_per_block(rate: int, channels: int) -> None:
    # A mic that only takes 44.1/48 kHz feeds a 16 kHz graph: the anti-aliasing FIR runs every 20 ms, into
    # buffers kept across blocks. What a block may still allocate is the bytes it returns (640 B mono).
    import tracemalloc

    r = Resampler(rate, 16000, channels)
    block = (np.sin(np.arange(rate // 50 * channels) / 7) * 8000).astype(np.int16).tobytes()
    for _ in range(5):
        r.process(block)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            r.process(block)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 2 * 320 * channels + 1500, peak  # the old FIR held 4 float64 copies of the block (>30 KB)
