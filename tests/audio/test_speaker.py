"""speaker() on the virtual speaker of a private PulseAudio server, checked at the sink's monitor."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.audio.speaker import Speaker, speaker
from rxkit.elements import AudioFrame, EndOfTurn, Interrupt, PlaybackFinished, PlaybackStarted, TextDelta
from rxkit.errors import AudioDeviceError, BufferOverflowError, ConfigError
from rxkit.testing import ano_leaks
from tests.audio.pulse import (
    PulseAudio,
    dominant_frequency,
    loud_part,
    nonsilent_seconds,
    os_threads,
    threads_back_to,
    wait_for,
)

pytestmark = pytest.mark.audio


def tone(freq: float, seconds: float, rate: int = 22050, channels: int = 1, block_ms: int = 20) -> list[AudioFrame]:
    n = int(rate * seconds)
    samples = (np.sin(2 * np.pi * freq * np.arange(n) / rate) * 8000).astype(np.int16)
    pcm = np.repeat(samples, channels).tobytes()
    step = rate * block_ms // 1000 * 2 * channels
    return [AudioFrame(pcm[i : i + step], rate, channels, i / (2 * channels * rate)) for i in range(0, len(pcm), step)]


class Run:
    """A speaker fed from a Subject, recording what comes out and when."""

    def __init__(self, out_stage: Speaker) -> None:
        self.input: Subject[Any] = Subject()
        self.out: list[Any] = []
        self.at: list[float] = []
        self.completed = asyncio.Event()
        self.errors: list[Exception] = []
        stream: Observable[Any] = self.input.pipe(out_stage)
        self.sub = stream.subscribe(
            self._on_next, self._on_error, self.completed.set, scheduler=AsyncIOScheduler(asyncio.get_running_loop())
        )

    def _on_next(self, x: Any) -> None:
        self.out.append(x)
        self.at.append(time.monotonic())

    def _on_error(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.completed.set()

    def send(self, *items: Any) -> None:
        for x in items:
            self.input.on_next(x)

    def of(self, kind: type) -> list[Any]:
        return [x for x in self.out if isinstance(x, kind)]


async def test_plays_a_reply_heard_at_the_monitor_and_reports_when_it_finished(pulse: PulseAudio) -> None:
    baseline = os_threads()
    async with ano_leaks():
        mark = pulse.capture_position()
        run = Run(speaker(sample_rate=22050))
        run.send(*tone(440, 1.0), EndOfTurn())
        run.input.on_completed()
        await asyncio.wait_for(run.completed.wait(), 30)
        await threads_back_to(baseline)  # completion closed the stream
        await asyncio.sleep(0.3)  # the monitor recorder's own latency
    assert run.errors == []
    assert [type(x) for x in run.out] == [PlaybackStarted, PlaybackFinished, EndOfTurn]
    started, finished = run.out[0], run.out[1]
    assert finished.played_s == pytest.approx(1.0, abs=0.03) and not finished.interrupted
    # Held back until the audio had played: a lower bound only (the device's latency estimates jitter).
    assert run.at[1] - run.at[0] >= 0.75
    assert finished.time > started.time
    heard = pulse.captured_since(mark)
    assert 0.9 <= nonsilent_seconds(heard) <= 1.15
    assert abs(dominant_frequency(loud_part(heard)) - 440) < 3


async def test_an_interrupt_drops_queued_audio_and_a_new_reply_plays_after(pulse: PulseAudio) -> None:
    mark = pulse.capture_position()
    out = speaker()
    run = Run(out)
    try:
        run.send(*tone(440, 5.0), TextDelta("shown at once"), EndOfTurn())  # 5 s queued in one go
        await wait_for(lambda: run.of(PlaybackStarted), what="playback to start")
        assert run.out[0] == TextDelta("shown at once")
        await asyncio.sleep(0.5)
        run.send(Interrupt("barge-in"))
        # The Interrupt passes at once, then the cut reply is reported, then its held-back EndOfTurn.
        assert [type(x) for x in run.out[1:]] == [PlaybackStarted, Interrupt, PlaybackFinished, EndOfTurn]
        cut = run.of(PlaybackFinished)[0]
        assert cut.interrupted and cut.played_s < 2.0
        await asyncio.sleep(1.0)
        heard_first = nonsilent_seconds(pulse.captured_since(mark))
        assert 0.2 < heard_first < 2.0  # much shorter than the 5 s that were queued

        mark2 = pulse.capture_position()
        run.send(*tone(880, 0.5), EndOfTurn())
        await wait_for(lambda: len(run.of(EndOfTurn)) == 2, what="the second reply to finish")
        second = run.of(PlaybackFinished)[1]
        assert not second.interrupted and second.played_s == pytest.approx(0.5, abs=0.03)
        await asyncio.sleep(0.3)
        heard = pulse.captured_since(mark2)
        assert 0.4 <= nonsilent_seconds(heard) <= 0.65  # only the new reply: nothing of the old one came back
        assert abs(dominant_frequency(loud_part(heard)) - 880) < 10
    finally:
        run.sub.dispose()
    assert out._active == []


async def test_flush_from_outside_stops_playback(pulse: PulseAudio) -> None:
    mark = pulse.capture_position()
    out = speaker(sample_rate=16000)
    run = Run(out)
    try:
        run.send(*tone(440, 4.0, rate=16000))
        await wait_for(lambda: run.of(PlaybackStarted), what="playback to start")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(out.flush)  # e.g. from a UI thread
        await wait_for(lambda: run.of(PlaybackFinished), what="the interrupted playback report")
        assert run.of(PlaybackFinished)[0].interrupted
        await asyncio.sleep(0.8)
        assert nonsilent_seconds(pulse.captured_since(mark)) < 1.5
    finally:
        run.sub.dispose()


async def test_frames_in_another_format_are_converted(pulse: PulseAudio) -> None:
    mark = pulse.capture_position()
    run = Run(speaker(sample_rate=22050))
    run.send(*tone(660, 0.6, rate=16000, channels=2))
    run.input.on_completed()  # no EndOfTurn: the end of the input finishes the reply
    await asyncio.wait_for(run.completed.wait(), 30)
    assert [type(x) for x in run.out] == [PlaybackStarted, PlaybackFinished]
    assert run.out[1].played_s == pytest.approx(0.6, abs=0.03)
    await asyncio.sleep(0.3)
    heard = pulse.captured_since(mark)
    assert 0.5 <= nonsilent_seconds(heard) <= 0.75
    assert abs(dominant_frequency(loud_part(heard)) - 660) < 8


async def test_end_of_turn_with_nothing_playing_passes_at_once(pulse: PulseAudio) -> None:
    run = Run(speaker())
    try:
        run.send(EndOfTurn(), TextDelta("x"))
        assert run.out == [EndOfTurn(), TextDelta("x")]
    finally:
        run.sub.dispose()


async def test_a_full_buffer_is_an_error_or_drops_the_newest(pulse: PulseAudio) -> None:
    baseline = os_threads()
    run = Run(speaker(max_buffer_s=0.5))
    run.send(*tone(440, 1.0))
    assert len(run.errors) == 1 and isinstance(run.errors[0], BufferOverflowError)
    assert "max_buffer_s" in str(run.errors[0])
    await threads_back_to(baseline)  # the error closed the stream

    dropping = speaker(max_buffer_s=0.5, overflow="drop_newest")
    run = Run(dropping)
    try:
        run.send(*tone(440, 1.0))
        assert run.errors == [] and dropping.dropped == 25  # 0.5 s of 20 ms frames did not fit
    finally:
        run.sub.dispose()


async def test_dispose_mid_reply_closes_the_stream(pulse: PulseAudio) -> None:
    baseline = os_threads()
    async with ano_leaks():
        run = Run(speaker())
        run.send(*tone(440, 3.0))
        await wait_for(lambda: run.of(PlaybackStarted), what="playback to start")
        run.sub.dispose()
        await threads_back_to(baseline)


def test_bad_settings_and_no_such_device_fail_before_any_stream_opens(pulse: PulseAudio) -> None:
    baseline = os_threads()
    with pytest.raises(AudioDeviceError, match=r"no output device named like 'hdmi 7'.*default"):
        speaker("hdmi 7")
    with pytest.raises(ConfigError, match="overflow"):
        speaker(overflow="drop_oldest")
    with pytest.raises(ConfigError, match="whole number of samples"):
        speaker(sample_rate=22050, block_ms=3)
    assert os_threads() == baseline


async def test_a_device_without_our_rate_plays_at_its_own_resampled_and_pauses_and_resumes(
    pulse: PulseAudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw hw: devices often take only 44.1/48 kHz: here the check says so (the stream really runs at 48 kHz).
    Also pause/resume (a suspected barge-in): the reply is held, then plays on whole."""
    import sounddevice as sd

    real = sd.check_output_settings

    def only_48k(**kwargs: Any) -> None:
        if kwargs.get("samplerate") != 48000:
            raise sd.PortAudioError("Invalid sample rate")
        real(**kwargs)

    monkeypatch.setattr(sd, "check_output_settings", only_48k)
    out = speaker(sample_rate=22050)
    assert (out.asked_rate, out.sample_rate) == (22050, 48000)
    mark = pulse.capture_position()
    run = Run(out)
    run.send(*tone(440, 1.5), EndOfTurn())
    await wait_for(lambda: run.out, 30, "playback to start")
    await asyncio.sleep(0.3)
    out.pause()
    paused_at = out.played_s()
    await asyncio.sleep(0.8)
    assert out.played_s() == pytest.approx(paused_at, abs=0.25)  # held: the device's buffer at most
    out.resume()
    await wait_for(lambda: len(run.out) == 3, 30, "the reply to finish")
    run.input.on_completed()
    await asyncio.wait_for(run.completed.wait(), 30)
    await asyncio.sleep(0.3)
    finished = run.out[1]
    assert isinstance(finished, PlaybackFinished) and not finished.interrupted
    assert finished.played_s == pytest.approx(1.5, abs=0.05)  # all of it, nothing skipped by the pause
    heard = pulse.captured_since(mark)
    assert 1.4 <= nonsilent_seconds(heard) <= 1.7
    assert abs(dominant_frequency(loud_part(heard)) - 440) < 3


async def test_a_speaker_that_stops_taking_audio_ends_the_stream_with_a_clear_error(pulse: PulseAudio) -> None:
    """The device goes away mid-reply (here: its PulseAudio sink is suspended): an error, not a silent wait."""
    import subprocess

    from rxkit.errors import AudioDeviceError

    baseline = os_threads()
    run = Run(speaker(sample_rate=22050))
    run.send(*tone(440, 6.0), EndOfTurn())
    try:
        await wait_for(lambda: run.out, 30, "playback to start")
        subprocess.run(["pactl", "suspend-sink", "spk", "1"], env=pulse.env(), check=True, timeout=10)
        await wait_for(lambda: run.errors, 15.0, "the error")
    finally:
        subprocess.run(["pactl", "suspend-sink", "spk", "0"], env=pulse.env(), check=True, timeout=10)
    (error,) = run.errors
    assert isinstance(error, AudioDeviceError) and "speaker" in str(error) and "unplugged" in str(error)
    await threads_back_to(baseline)  # the stream was closed


def hold_the_gil(seconds: float) -> None:
    """Block this process's Python threads, PortAudio's callback included, as a busy engine does (a C call that
    keeps the GIL: ctypes.PyDLL calls never release it)."""
    import ctypes

    ctypes.PyDLL(None).usleep(int(seconds * 1_000_000))


async def test_a_reply_made_while_the_process_is_busy_starts_without_an_underrun(pulse: PulseAudio) -> None:
    """Between replies the stream is stopped: making the next reply (STT, model, TTS; here 0.4 s with the GIL
    held, more than the device's 0.12 s buffer) cannot underrun it, and the reply's first block is the first
    the device plays. A stream left running on silence underran twice at every such reply start."""
    mark = pulse.capture_position()
    out = speaker(sample_rate=22050)
    run = Run(out)
    try:
        for _ in range(2):
            await asyncio.sleep(1.0)  # listening to the user: nothing to play
            hold_the_gil(0.4)  # the reply being made
            run.send(*tone(440, 0.5), EndOfTurn())
            await wait_for(lambda: len(run.of(EndOfTurn)) == 1, 30, "the reply to finish")
            run.out.clear()
        await asyncio.sleep(0.3)  # the monitor recorder's own latency
    finally:
        run.sub.dispose()
    assert run.errors == []
    assert out.underruns == 0
    heard = pulse.captured_since(mark)
    assert 0.9 <= nonsilent_seconds(heard) <= 1.15  # both replies, whole


async def test_played_s_is_what_the_device_has_played_by_its_dac_time(pulse: PulseAudio) -> None:
    """played_s against the speaker's monitor: the DAC time of the blocks, not the samples handed over (which
    ran 15-60 ms ahead here: PulseAudio's ALSA plugin pulls audio in bursts) nor the clock."""
    mark = pulse.capture_position()
    out = speaker(sample_rate=22050)
    run = Run(out)
    gaps = []
    try:
        run.send(*tone(440, 4.0), EndOfTurn())
        await wait_for(lambda: run.out, 30, "playback to start")
        for k in range(8):
            await asyncio.sleep(0.3 + 0.037 * k)  # not in step with the device's blocks
            played = out.played_s()
            heard = loud_part(pulse.captured_since(mark))
            assert played is not None
            gaps.append(played - len(heard) / 16000)
    finally:
        run.sub.dispose()
    gaps.sort()
    assert abs(gaps[len(gaps) // 2]) <= 0.03, gaps  # the median; the monitor records in 20 ms steps


async def test_stop_after_ends_the_reply_at_that_second_however_late_the_loop_is(pulse: PulseAudio) -> None:
    """An after_sentence barge-in: the speaker is told where the sentence ends and stops there on PortAudio's
    thread; the flush that follows may come late (here the loop is blocked 1 s past the point)."""
    mark = pulse.capture_position()
    out = speaker(sample_rate=22050)
    run = Run(out)
    try:
        run.send(*tone(440, 3.0), EndOfTurn())
        await wait_for(lambda: run.out, 30, "playback to start")
        out.stop_after(1.0)
        time.sleep(2.0)  # the loop is late: it flushes a second after the point
        assert out.played_s() == pytest.approx(1.0, abs=0.02)  # held there: nothing after it was played
        run.send(Interrupt("barge-in"))
        await asyncio.sleep(0.5)
    finally:
        run.sub.dispose()
    cut = run.of(PlaybackFinished)[0]
    assert cut.interrupted and cut.played_s == pytest.approx(1.0, abs=0.02)
    heard = pulse.captured_since(mark)
    assert 0.95 <= nonsilent_seconds(heard) <= 1.1  # 1 s, not the 2 s the loop took
