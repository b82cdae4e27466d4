"""microphone() on the virtual mic of a private PulseAudio server, fed with real recorded speech."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.audio.mic import microphone
from rxkit.audio.wav import read_wav
from rxkit.elements import AudioFrame, SpeechStarted, SpeechStopped, Utterance
from rxkit.errors import AudioDeviceError
from rxkit.operators import turn_detector, vad
from rxkit.testing import ano_leaks
from tests.audio.pulse import PulseAudio, nonsilent_seconds, os_threads, threads_back_to, wait_for

pytestmark = pytest.mark.audio


def _pcm(frames: list[Any]) -> np.ndarray:
    return np.frombuffer(b"".join(f.pcm for f in frames if isinstance(f, AudioFrame)), dtype=np.int16)


async def test_hears_real_speech_played_into_the_virtual_mic(pulse: PulseAudio, librivox: list[Path]) -> None:
    speech = librivox[1]  # "he was not an ill disposed young man", 3 s
    expected = nonsilent_seconds(np.frombuffer(read_wav(speech).pcm, dtype=np.int16))
    baseline = os_threads()
    async with ano_leaks():
        mic = microphone(sample_rate=16000, block_ms=20)
        frames: list[AudioFrame] = []
        sub = mic.subscribe(frames.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
        await wait_for(lambda: len(frames) >= 5, what="the first frames")  # the stream is live
        before = len(frames)
        await pulse.play_into_mic(speech)
        await asyncio.sleep(0.3)
        sub.dispose()
        await threads_back_to(baseline)  # PortAudio's thread is gone with the stream
    heard = frames[before:]
    assert {(len(f.pcm), f.sample_rate, f.channels) for f in frames} == {(640, 16000, 1)}
    assert all(type(f.pcm) is bytes for f in frames)
    assert abs(nonsilent_seconds(_pcm(heard)) - expected) < 0.3  # the recording came through, all of it
    assert nonsilent_seconds(_pcm(frames[:before])) == 0  # and nothing before it was played
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.monotonic()) < 10
    assert mic.dropped == 0


async def test_turn_detection_on_the_live_mic_finds_the_spoken_sentence(
    pulse: PulseAudio, librivox: list[Path]
) -> None:
    out: list[Any] = []
    mic = microphone(block_ms=20)
    sub = mic.pipe(vad(2), turn_detector(stop_ms=500)).subscribe(
        out.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop())
    )
    try:
        await asyncio.sleep(0.3)
        await pulse.play_into_mic(librivox[4])  # "he might even have been made amiable himself", 3.3 s
        await wait_for(lambda: any(isinstance(x, Utterance) for x in out), what="the utterance")
    finally:
        sub.dispose()
    assert [type(x) for x in out] == [SpeechStarted, SpeechStopped, Utterance]
    utt = out[2]
    assert 2.5 < utt.duration < 5.0 and utt.sample_rate == 16000
    assert out[1].timestamp - out[0].timestamp > 2.0  # start and stop on the mic's monotonic clock


async def test_completes_after_duration_with_the_asked_format(pulse: PulseAudio) -> None:
    baseline = os_threads()
    done = asyncio.Event()
    frames: list[AudioFrame] = []
    mic = microphone("pulse", sample_rate=48000, channels=2, block_ms=10, duration=0.5)
    mic.subscribe(frames.append, on_completed=done.set, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
    await asyncio.wait_for(done.wait(), 20)
    assert sum(len(f.pcm) for f in frames) == 48000 * 2 * 2 // 2  # exactly 0.5 s, 2 channels
    assert {(f.sample_rate, f.channels) for f in frames} == {(48000, 2)}
    assert len(frames[0].pcm) == 480 * 2 * 2
    await threads_back_to(baseline)


async def test_a_stalled_loop_drops_the_oldest_blocks_and_counts_them(pulse: PulseAudio) -> None:
    frames: list[AudioFrame] = []
    mic = microphone(block_ms=10, maxsize=5)
    sub = mic.subscribe(frames.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
    try:
        await wait_for(lambda: len(frames) >= 10, what="frames")
        n = len(frames)
        time.sleep(0.6)  # the loop is stuck: ~60 blocks arrive, 5 may wait
        await asyncio.sleep(0)  # one turn of the loop: the drain runs once
        burst = frames[n:]
        assert 1 <= len(burst) <= 6  # never more than maxsize (+1 that may land during the drain)
        assert mic.dropped >= 40
        # What was kept is the newest audio: a gap of at least the stall before it.
        assert burst[0].timestamp - frames[n - 1].timestamp > 0.4
    finally:
        sub.dispose()


async def test_a_failing_subscriber_ends_the_capture(pulse: PulseAudio) -> None:
    baseline = os_threads()
    errors: list[Exception] = []
    calls = []

    def boom(frame: AudioFrame) -> None:
        calls.append(frame)
        raise ValueError("downstream broke")

    loop = asyncio.get_running_loop()
    handler_calls: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: handler_calls.append(ctx))
    try:
        microphone().subscribe(boom, errors.append, scheduler=AsyncIOScheduler(loop))
        await wait_for(lambda: calls, what="the first frame")
        await threads_back_to(baseline)  # the stream was closed
    finally:
        loop.set_exception_handler(None)
    assert len(calls) == 1 and handler_calls == []  # nothing escaped into the loop


def test_no_such_device_fails_before_any_stream_opens(pulse: PulseAudio) -> None:
    baseline = os_threads()
    with pytest.raises(AudioDeviceError, match=r"no input device named like 'studio mic'.*pulse"):
        microphone("studio mic")
    with pytest.raises(AudioDeviceError, match="index 42"):
        microphone(42)
    assert os_threads() == baseline


async def test_a_microphone_that_stops_delivering_ends_the_stream_with_a_clear_error(pulse: PulseAudio) -> None:
    """The device goes away mid-session (here: its PulseAudio source is suspended): an error, not a silent wait."""
    import subprocess

    baseline = os_threads()
    frames: list[AudioFrame] = []
    errors: list[Exception] = []
    loop = asyncio.get_running_loop()
    sub = microphone(stall_s=1.0).subscribe(frames.append, errors.append, scheduler=AsyncIOScheduler(loop))
    try:
        await wait_for(lambda: len(frames) >= 10, what="the first frames")
        subprocess.run(["pactl", "suspend-source", "mic", "1"], env=pulse.env(), check=True, timeout=10)
        await wait_for(lambda: errors, 15.0, "the error")
    finally:
        subprocess.run(["pactl", "suspend-source", "mic", "0"], env=pulse.env(), check=True, timeout=10)
        sub.dispose()
    (error,) = errors
    assert isinstance(error, AudioDeviceError) and "microphone" in str(error) and "unplugged" in str(error)
    await threads_back_to(baseline)  # the stream was closed


async def test_a_device_without_our_rate_opens_at_its_own_and_the_frames_are_resampled(
    pulse: PulseAudio, librivox: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw hw: devices often take only 44.1/48 kHz: here the check says so (the stream really runs at 48 kHz)."""
    import sounddevice as sd

    real = sd.check_input_settings

    def only_48k(**kwargs: Any) -> None:
        if kwargs.get("samplerate") != 48000:
            raise sd.PortAudioError("Invalid sample rate")
        real(**kwargs)

    monkeypatch.setattr(sd, "check_input_settings", only_48k)
    speech = librivox[1]
    expected = nonsilent_seconds(np.frombuffer(read_wav(speech).pcm, dtype=np.int16))
    mic = microphone(sample_rate=16000, block_ms=20)
    assert mic.device_rate == 48000 and "16000 Hz from 48000 Hz" in repr(mic)
    frames: list[AudioFrame] = []
    sub = mic.subscribe(frames.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop()))
    try:
        await wait_for(lambda: len(frames) >= 5, what="the first frames")
        before = len(frames)
        await pulse.play_into_mic(speech)
        await asyncio.sleep(0.3)
    finally:
        sub.dispose()
    assert {(f.sample_rate, f.channels) for f in frames} == {(16000, 1)}
    assert abs(nonsilent_seconds(_pcm(frames[before:])) - expected) < 0.3  # the speech came through, resampled
    monkeypatch.setattr(sd, "check_input_settings", lambda **_: (_ for _ in ()).throw(sd.PortAudioError("no")))
    with pytest.raises(AudioDeviceError, match="cannot input 1 ch at 16000 Hz"):
        microphone(sample_rate=16000)  # no rate at all: the error names the one asked for
