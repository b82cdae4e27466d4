"""The speaker: a sink stage that plays :class:`~rxkit.elements.AudioFrame` on an output device.

Frames go into a bounded queue (``max_buffer_s`` of audio) that a
sounddevice output stream's callback reads on PortAudio's thread; frames in
another rate or channel count are converted on the way in. Around the audio
the stage emits, in stream order:

* :class:`~rxkit.elements.PlaybackStarted` when the first sample of a
  reply leaves the device,
* :class:`~rxkit.elements.PlaybackFinished` when the last one has (at
  :class:`~rxkit.elements.EndOfTurn`, or at the end of the input), followed
  by the EndOfTurn / EndOfStream itself, held back until then.

An :class:`~rxkit.elements.Interrupt` (or :meth:`Speaker.flush`) drops every
queued sample, and the stream is aborted so that the device's own buffer
(``latency``) is dropped too; playback stops within about one block. The
Interrupt passes on at once, followed by ``PlaybackFinished(interrupted=True)``
and the held-back controls. Other elements pass through untouched. The stream
opens at subscribe and closes on dispose, on error, or once the input
completed and everything queued has played. It runs only while there is
audio to play: stopped about half a second after a reply has played, it
starts again with the next reply's audio queued, so that the time between
replies cannot underrun it and a reply's first block is the first the device
plays. :meth:`Speaker.played_s` says how much of the reply playing was heard,
by the device's DAC timing::

    from rxkit.audio import speaker
    out = speaker(sample_rate=22050)
    tts_frames.pipe(out).subscribe(print)    # PlaybackStarted(...), PlaybackFinished(...), EndOfTurn(...)
    out.flush()                              # barge-in from elsewhere
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.audio._watchdog import DeviceWatchdog
from rxkit.audio.convert import FrameConverter
from rxkit.audio.devices import AudioDevice, find_device, sounddevice, supported_rate
from rxkit.elements import AudioFrame, EndOfStream, EndOfTurn, Interrupt, PlaybackFinished, PlaybackStarted
from rxkit.errors import AudioDeviceError, BufferOverflowError, ConfigError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import loop_of

__all__ = ["Speaker", "speaker"]

_START, _END, _COMPLETE = 0, 1, 2  # kinds of queued markers


_MAX_CONTROLS = 10_000  # control elements held back until their audio has played (a flood of them is a bug)
_STALL_S = 2.0  # a device that takes no audio for this long (the process not held up meanwhile) is gone
_IDLE_S = 0.5  # the stream stops this long after the last reply played (+ the device's latency)
_DAC_MARKS = 64  # (DAC time, position) of the latest blocks; at least the device's buffer's worth
_MAX_CHUNKS = 100_000  # queued audio chunks, besides the byte bound (tiny frames must not grow it without end)


class Speaker(Stage[Any, Any]):
    """A sink stage over an output device; see :func:`speaker`."""

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int = 22050,
        channels: int = 1,
        block_ms: int = 20,
        max_buffer_s: float = 120.0,
        overflow: str = "error",
        latency: float | str | None = 0.1,
    ) -> None:
        if block_ms <= 0 or sample_rate * block_ms % 1000:
            raise ConfigError(f"block_ms={block_ms} is not a whole number of samples at {sample_rate} Hz")
        if overflow not in ("error", "drop_newest"):
            raise ConfigError(f"speaker overflow policy must be 'error' or 'drop_newest', not {overflow!r}")
        if max_buffer_s <= 0:
            raise ConfigError(f"max_buffer_s must be positive, not {max_buffer_s}")
        self.device: AudioDevice = find_device(device, "output")
        self.asked_rate = sample_rate
        # A rate the device takes (raw hw: devices: often 44.1/48 kHz only); frames are resampled to it.
        sample_rate = supported_rate(self.device, "output", sample_rate, channels)
        if sample_rate * block_ms % 1000:
            raise ConfigError(f"block_ms={block_ms} is not a whole number of samples at {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_frames = sample_rate * block_ms // 1000
        self.max_bytes = int(max_buffer_s * sample_rate) * channels * 2
        self.overflow = overflow
        self.latency = latency
        self.dropped = 0
        self.underruns = 0
        self._active: list[_Playback] = []
        super().__init__("speaker", self._operator, StageKind.SINK, "plays audio frames on an output device")

    def flush(self) -> None:
        """Drop all queued audio now (barge-in), as an :class:`Interrupt` would. Thread-safe."""
        for playback in list(self._active):
            playback.loop_call(playback.flush)

    def pause(self) -> None:
        """Hold playback where it is: the device plays silence (after what it buffers, ``latency``) until
        :meth:`resume` or a flush; nothing queued is lost. Thread-safe."""
        for playback in list(self._active):
            playback.loop_call(playback.set_paused, True)

    def resume(self) -> None:
        """Play on from where :meth:`pause` held the audio. Thread-safe."""
        for playback in list(self._active):
            playback.loop_call(playback.set_paused, False)

    def stop_after(self, seconds: float) -> None:
        """Play the reply now playing up to ``seconds`` into it, then silence until a flush or an
        :class:`Interrupt` drops the rest (an ``after_sentence`` barge-in: the cut falls on the sentence's
        end, on PortAudio's thread, however late the event loop runs). Thread-safe.

        >>> out.stop_after(3.9)      # doctest: +SKIP
        """
        for playback in list(self._active):
            playback.loop_call(playback.set_stop, seconds)

    def played_s(self) -> float | None:
        """Seconds of the reply now playing that have been heard; None when nothing plays.

        Taken from the device's own timing, not the wall clock nor the samples handed over:
        PortAudio tells each block when its first sample reaches the DAC, and the position is
        extrapolated from the last block that has, at the stream's time now. (Where the host API
        reports no DAC time: the samples handed over, less the device's latency.) Call it on the
        event loop's thread.

        >>> out.played_s()      # doctest: +SKIP
        1.84
        """
        for playback in list(self._active):
            started = playback.started_at
            if started is not None:
                return max(0.0, (playback.heard_bytes() - started) / playback.bytes_per_s)
        return None

    def _operator(self, source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            playback = _Playback(self, observer, loop_of(scheduler))
            if not playback.open():
                return Disposable()
            upstream = source.subscribe(playback.on_next, playback.on_error, playback.on_completed, scheduler=scheduler)
            playback.upstream = upstream
            return Disposable(playback.close)

        return reactivex.create(subscribe)


class _Playback:
    """One open output stream, its queue, and the markers waiting to be reached."""

    def __init__(self, spk: Speaker, observer: abc.ObserverBase[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.spk = spk
        self.observer = observer
        self.loop = loop
        self.convert = FrameConverter(spk.sample_rate, spk.channels)
        self.bytes_per_s = spk.sample_rate * spk.channels * 2
        # Shared with PortAudio's thread without a lock: the loop appends, the callback pops
        # (both atomic); each counter has a single writer. Bound: spk.max_bytes of audio,
        # checked in _enqueue_audio, plus one marker per control element held back.
        self.queue: deque[tuple[int, Any]] = deque(maxlen=_MAX_CHUNKS + _MAX_CONTROLS)
        self.gen = 0  # bumped by flush; the callback discards items of older generations
        self.paused = False  # set by the loop (pause, resume, flush); the callback then plays silence
        self.written = 0  # bytes queued (loop)
        self.consumed = 0  # bytes taken off the queue, played or discarded (callback)
        self.out_bytes = 0  # bytes really played (callback)
        # The callback's own state.
        self.cur: memoryview | None = None
        self.cur_off = 0
        self.cur_gen = 0
        # The loop's own state.
        self.pending: deque[tuple[int, int, Any]] = deque(maxlen=_MAX_CONTROLS)  # (seq, kind, element)
        self.seq = 0
        self.in_turn = False  # audio queued since the last end marker
        self.started_at: int | None = None  # out_bytes when PlaybackStarted was emitted
        self.timers: set[asyncio.TimerHandle] = set()
        self.closed = False
        self.upstream: abc.DisposableBase | None = None
        self.stream: Any = None
        self.device_latency = 0.0
        self.running = False  # the stream is started (the loop's thread starts and stops it)
        self.stop_at: int | None = None  # out_bytes where the callback stops playing (stop_after)
        self.starting = False  # a start is scheduled
        self.idle: asyncio.TimerHandle | None = None
        # (when the block's first sample reaches the DAC, in the stream's time; out_bytes at the block's
        # start; at the end of its audio): appended by the callback, read by heard_bytes on the loop.
        self.dac: deque[tuple[float, int, int]] = deque(maxlen=_DAC_MARKS)
        self.watch = DeviceWatchdog(loop, _STALL_S, f"the speaker {spk.device.name!r}", "took no audio", self.on_error)

    def loop_call(self, fn: Any, *args: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def open(self) -> bool:
        sd = self.sd = sounddevice()
        spk = self.spk
        try:
            self.stream = sd.RawOutputStream(
                samplerate=spk.sample_rate,
                blocksize=spk.block_frames,
                device=spk.device.index,
                channels=spk.channels,
                dtype="int16",
                latency=spk.latency,
                callback=self._callback,
                finished_callback=self.watch.finished,
            )
            self.device_latency = float(self.stream.latency)
            marks = int(2 * self.device_latency * spk.sample_rate / spk.block_frames) + 8
            self.dac = deque(maxlen=max(_DAC_MARKS, marks))
            self.silence = memoryview(bytes(spk.block_frames * spk.channels * 2))
            self.stream.start()  # at once, though nothing plays yet: a device that fails, fails here
        except (sd.PortAudioError, ValueError) as exc:
            self.close()
            self.observer.on_error(AudioDeviceError(f"could not open the speaker {spk.device.name!r}: {exc}"))
            return False
        spk._active.append(self)
        self.running = True
        self.watch.arm(self.stream)
        self.idle_soon()
        return True

    # Between replies the stream is stopped, not fed silence. A running stream underruns whenever
    # PortAudio's thread waits longer than the device's buffer (~0.1 s) for the GIL or a core, which
    # in a voice session is exactly while the next reply is being made (VAD, STT, model, TTS):
    # ALSA logged an underrun at every reply start, and the reply began on a device buffer that the
    # underrun had emptied. Started with the reply's audio queued, the stream fills its buffer
    # with audio, and its first block is the reply's first.
    def idle_soon(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.loop.call_later(_IDLE_S + self.device_latency, self._go_idle)

    def _go_idle(self) -> None:
        self.idle = None
        if self.closed or not self.running or self.in_turn or self.pending or self.written > self.consumed:
            return  # something plays, or is about to: a later end of a reply calls again
        self._stop_stream()

    def _stop_stream(self) -> None:
        """Abort the stream (what the device holds is dropped) and drop what is queued."""
        self.watch.disarm()  # stopped on purpose
        self.running = False
        self.stream.abort(ignore_errors=True)
        # PortAudio's thread is stopped now: the loop may touch the callback's state.
        self.queue.clear()
        self.cur = None
        self.consumed = self.written
        self.dac.clear()

    def _start_stream(self) -> None:
        self.starting = False
        if self.closed or self.running or self.written == self.consumed:
            return  # closed, or flushed meanwhile
        try:
            self.stream.start()
        except self.sd.PortAudioError as exc:
            self.on_error(AudioDeviceError(f"could not restart the speaker {self.spk.device.name!r}: {exc}"))
            return
        self.running = True
        self.watch.arm(self.stream)

    def heard_bytes(self) -> int:
        """The position (in out_bytes) of the sample at the DAC now; see :meth:`Speaker.played_s`."""
        marks = list(self.dac)  # one C call under the GIL: the callback cannot append meanwhile
        stream = self.stream
        if marks and stream is not None:
            try:
                now = float(stream.time)
            except self.sd.PortAudioError:
                now = 0.0
            if now:
                for dac, start, end in reversed(marks):
                    if dac <= now:
                        frame = 2 * self.spk.channels
                        return min(end, start + int((now - dac) * self.bytes_per_s) // frame * frame)
                return marks[0][1]  # nothing recorded has reached the DAC yet
        return self.out_bytes - int(self.device_latency * self.bytes_per_s)

    # -- PortAudio's thread: no locks, no logging, no allocation beyond slicing -------------
    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow:
            self.spk.underruns += 1
        self.watch.beats += 1
        need = len(outdata)
        start = self.out_bytes
        dac = time_info.outputBufferDacTime  # 0 where the host API does not tell (heard_bytes then estimates)
        if self.paused:
            outdata[:need] = self.silence[:need]
            if dac:
                self.dac.append((dac, start, start))
            return
        pos = 0
        gen = self.gen
        queue = self.queue
        cur, off = self.cur, self.cur_off
        if cur is not None and self.cur_gen != gen:
            self.consumed += len(cur) - off
            cur = None
        stop = self.stop_at
        end = need if stop is None else min(need, max(0, stop - start))
        while pos < end:
            if cur is None:
                if not queue:
                    break
                item_gen, item = queue.popleft()
                if type(item) is int:  # a marker: tell the loop when its position leaves the device
                    if item_gen == gen:
                        self._reached(time_info, item_gen, item, pos)
                    continue
                if item_gen != gen:
                    self.consumed += len(item)
                    continue
                cur, off, self.cur_gen = memoryview(item), 0, item_gen
            n = min(end - pos, len(cur) - off)
            outdata[pos : pos + n] = cur[off : off + n]
            pos += n
            off += n
            self.consumed += n
            if off == len(cur):
                cur = None
        self.out_bytes = start + pos
        if dac:
            self.dac.append((dac, start, start + pos))
        if pos < need:
            outdata[pos:need] = self.silence[: need - pos]
        self.cur, self.cur_off = cur, off

    def _reached(self, time_info: Any, gen: int, seq: int, pos: int) -> None:
        # The first block of a started stream reaches the DAC at once (0 s ahead): only a DAC time
        # of 0 means the host API does not tell.
        dac = time_info.outputBufferDacTime
        delay = (max(0.0, dac - time_info.currentTime) if dac else self.device_latency) + pos / self.bytes_per_s
        try:
            self.loop.call_soon_threadsafe(self._on_reached, gen, seq, delay, self.out_bytes + pos)
        except RuntimeError:  # the loop is closed
            raise self.sd.CallbackAbort from None

    # -- the loop's thread ----------------------------------------------------------------
    def _on_reached(self, gen: int, seq: int, delay: float, out_bytes: int) -> None:
        if self.closed or gen != self.gen:
            return
        box: list[asyncio.TimerHandle] = []  # lets the timer remove its own handle
        box.append(self.loop.call_later(delay, self._emit_until, box, gen, seq, out_bytes))
        self.timers.add(box[0])

    def _emit_until(self, box: list[asyncio.TimerHandle], gen: int, seq: int, out_bytes: int) -> None:
        self.timers.discard(box[0])
        if self.closed or gen != self.gen:
            return
        pending = self.pending
        try:
            while pending and pending[0][0] <= seq:
                _, kind, element = pending.popleft()
                self._emit_marker(kind, element, out_bytes, interrupted=False)
                if self.closed or gen != self.gen:  # a downstream reaction flushed or closed us
                    return
        except Exception as exc:  # noqa: BLE001 - runs in a loop timer: hand failures to on_error
            self.on_error(exc)
            return
        if not pending:
            self.idle_soon()

    def _emit_marker(self, kind: int, element: Any, out_bytes: int, *, interrupted: bool) -> None:
        obs = self.observer
        if kind == _START:
            self.started_at = out_bytes
            obs.on_next(PlaybackStarted(time.monotonic()))
            return
        if self.started_at is not None:
            played = (out_bytes - self.started_at) / self.bytes_per_s
            self.started_at = None
            obs.on_next(PlaybackFinished(time.monotonic(), played, interrupted))
        if kind == _END and element is not None:
            obs.on_next(element)
        elif kind == _COMPLETE:
            self.close()
            obs.on_completed()

    def _mark(self, kind: int, element: Any = None) -> None:
        if len(self.pending) >= _MAX_CONTROLS:  # controls are never dropped; a flood of them is a bug
            raise BufferOverflowError(f"more than {_MAX_CONTROLS} control elements held back by the speaker")
        self.seq += 1
        self.pending.append((self.seq, kind, element))
        self.queue.append((self.gen, self.seq))

    def on_next(self, x: Any) -> None:
        if self.closed:
            return
        try:
            if isinstance(x, AudioFrame):
                self._enqueue_audio(x)
            elif isinstance(x, Interrupt):
                self.observer.on_next(x)
                self.flush()
            elif isinstance(x, (EndOfTurn, EndOfStream)):
                self._end_turn(x)
            else:
                self.observer.on_next(x)
        except Exception as exc:  # noqa: BLE001 - a bad frame or a full buffer ends the stage, typed
            self.on_error(exc)

    def _enqueue_audio(self, frame: AudioFrame) -> None:
        pcm = self.convert(frame).pcm
        if not pcm:
            return
        if self.written - self.consumed + len(pcm) > self.spk.max_bytes or len(self.queue) >= _MAX_CHUNKS:
            if self.spk.overflow == "drop_newest":
                self.spk.dropped += 1
                return
            raise BufferOverflowError(
                f"the speaker's buffer holds {self.spk.max_bytes / self.bytes_per_s:g} s of audio and is full; "
                "raise max_buffer_s or use overflow='drop_newest'"
            )
        if not self.in_turn:
            self.in_turn = True
            self._mark(_START)
        self.written += len(pcm)
        self.queue.append((self.gen, pcm))
        if not self.running and not self.starting:
            # Once the frames arriving together are queued (a TTS hands a sentence over at once): the
            # stream's first callbacks fill the device's buffer, and must not find the queue empty.
            self.starting = True
            self.loop.call_soon(self._start_stream)

    def _end_turn(self, element: Any) -> None:
        if not self.in_turn and not self.pending:
            self.observer.on_next(element)  # nothing playing: pass it on now
            return
        self.in_turn = False
        self._mark(_END, element)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def set_stop(self, seconds: float) -> None:
        if self.started_at is not None:
            frame = 2 * self.spk.channels
            self.stop_at = self.started_at + int(max(0.0, seconds) * self.bytes_per_s) // frame * frame

    def flush(self) -> None:
        """Drop queued audio; emit what was held back, at once."""
        if self.closed:
            return
        self.paused = False  # what was paused is dropped: the next reply plays
        self.gen += 1  # the callback drops older items from its next block on
        self.stop_at = None
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        self.in_turn = False
        heard = self.heard_bytes() if self.started_at is not None else 0
        if self.running and (self.started_at is not None or self.written > self.consumed):
            # Also drop what the device buffers (~latency, 0.1-0.2 s here): abort discards it (about 2 ms
            # on the loop, once per interrupt); the next reply starts the stream again.
            self._stop_stream()
        pending, self.pending = self.pending, deque(maxlen=_MAX_CONTROLS)
        if self.started_at is not None:
            # What the device held had not been heard yet: the abort above dropped it.
            self._emit_marker(_END, None, max(self.started_at, heard), interrupted=True)
        for _, kind, element in pending:
            if kind != _START:
                self._emit_marker(kind, element, self.out_bytes, interrupted=True)
            if self.closed:
                return
        self.idle_soon()

    def on_error(self, error: Exception) -> None:
        if self.closed:
            return
        self.close()
        self.observer.on_error(error)

    def on_completed(self) -> None:
        if self.closed:
            return
        if self.in_turn:
            self.in_turn = False
            self._mark(_END)
        if not self.pending:
            self.close()
            self.observer.on_completed()
            return
        self._mark(_COMPLETE)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.watch.disarm()
        if self.idle is not None:
            self.idle.cancel()
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        if self.upstream is not None:
            self.upstream.dispose()
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)  # at once: what is queued is not wanted any more
            stream.close(ignore_errors=True)
        self.queue.clear()
        self.pending.clear()
        if self in self.spk._active:
            self.spk._active.remove(self)


def speaker(
    device: int | str | None = None,
    sample_rate: int = 22050,
    channels: int = 1,
    block_ms: int = 20,
    *,
    max_buffer_s: float = 120.0,
    overflow: str = "error",
    latency: float | str | None = 0.1,
) -> Speaker:
    """A sink stage that plays audio frames on an output device and reports what really played.

    ``device``: an index, a piece of its name, or None for the default (an
    unknown one raises :class:`~rxkit.errors.AudioDeviceError` here).
    ``sample_rate`` / ``channels``: the stream's format (22050 Hz mono is what
    the built-in TTS makes, so it plays without conversion; other frames are
    resampled). ``block_ms``: the callback's block, which bounds how fast an
    interrupt takes effect. ``max_buffer_s``: how much audio may wait; beyond
    it ``overflow`` is ``"error"`` (:class:`~rxkit.errors.BufferOverflowError`)
    or ``"drop_newest"`` (counted in ``.dropped``). ``latency``: PortAudio's
    output latency in seconds (lower values underrun on a busy machine).

    >>> out = speaker(sample_rate=22050)                        # doctest: +SKIP
    >>> await Graph.chain(out).arun(wav_source("reply.wav"))    # doctest: +SKIP
    [PlaybackStarted(...), PlaybackFinished(...)]
    """
    return Speaker(device, sample_rate, channels, block_ms, max_buffer_s, overflow, latency)
