"""The microphone: an observable of :class:`~rxkit.elements.AudioFrame` from a sounddevice input stream.

PortAudio calls back on its own thread once per block. The callback copies
the block into a bounded deque (``maxsize`` blocks, dropping the oldest and
counting the drops when the event loop falls behind) and wakes the loop with
one ``call_soon_threadsafe`` per batch: no lock, no logging, no task per
frame. Frames carry PCM as ``bytes`` and ``timestamp`` is the
``time.monotonic()`` of the block's first sample (its arrival time minus
its length).

Each subscription opens its own stream; disposing it (or the end of
``duration``) closes the stream, and PortAudio's thread with it::

    from rxkit.audio import microphone
    mic = microphone(sample_rate=16000, block_ms=20)
    sub = mic.subscribe(print)        # on a running asyncio loop
    ...
    sub.dispose()
    print(mic.dropped)                # blocks dropped because the loop fell behind
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.audio._watchdog import DeviceWatchdog
from rxkit.audio.devices import AudioDevice, find_device, sounddevice, supported_rate
from rxkit.elements import AudioFrame
from rxkit.errors import AudioDeviceError, ConfigError
from rxkit.scheduling import loop_of

__all__ = ["Microphone", "microphone"]


class Microphone(Observable[AudioFrame]):
    """A cold observable of microphone frames; see :func:`microphone`."""

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        block_ms: int = 20,
        maxsize: int = 50,
        latency: float | str | None = None,
        duration: float | None = None,
        stall_s: float = 2.0,
    ) -> None:
        if stall_s <= 0:
            raise ConfigError(f"stall_s must be positive, not {stall_s}")
        if block_ms <= 0 or sample_rate * block_ms % 1000:
            raise ConfigError(f"block_ms={block_ms} is not a whole number of samples at {sample_rate} Hz")
        if maxsize < 1:
            raise ConfigError(f"maxsize must be at least 1 block, not {maxsize}")
        self.device: AudioDevice = find_device(device, "input")
        # The device's own rate where it cannot take ours: frames are resampled to ours on the loop.
        self.device_rate = supported_rate(self.device, "input", sample_rate, channels)
        if self.device_rate * block_ms % 1000:
            raise ConfigError(f"block_ms={block_ms} is not a whole number of samples at {self.device_rate} Hz")
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_ms = block_ms
        self.block_frames = sample_rate * block_ms // 1000
        self.maxsize = maxsize
        self.latency = latency
        self.duration = duration
        self.stall_s = stall_s
        self._captures: list[_Capture] = []
        self._closed_dropped = 0
        self._closed_overflows = 0
        super().__init__(self._subscribe)

    @property
    def dropped(self) -> int:
        """Blocks dropped (oldest first) because the event loop fell behind, over all subscriptions."""
        return self._closed_dropped + sum(c.dropped for c in self._captures)

    @property
    def overflows(self) -> int:
        """Blocks that PortAudio reported as overflowed (audio lost before rxkit saw it)."""
        return self._closed_overflows + sum(c.overflows for c in self._captures)

    def _subscribe(self, observer: abc.ObserverBase[AudioFrame], scheduler: abc.SchedulerBase | None = None) -> Any:
        capture = _Capture(self, observer, loop_of(scheduler))
        capture.open()
        return Disposable(capture.close)

    def _closed(self, capture: _Capture) -> None:
        if capture in self._captures:
            self._captures.remove(capture)
            self._closed_dropped += capture.dropped
            self._closed_overflows += capture.overflows

    def __repr__(self) -> str:
        rate = f"{self.sample_rate} Hz" + (
            f" from {self.device_rate} Hz" if self.device_rate != self.sample_rate else ""
        )
        return f"Microphone({self.device.name!r}, {rate}, {self.channels} ch, {self.block_ms} ms)"


class _Capture:
    """One open input stream and its hand-off to the loop."""

    def __init__(self, mic: Microphone, observer: abc.ObserverBase[AudioFrame], loop: asyncio.AbstractEventLoop):
        self.mic = mic
        self.observer = observer
        self.loop = loop
        self.queue: deque[AudioFrame] = deque(maxlen=mic.maxsize)
        self.scheduled = False
        self.closed = False
        self.dropped = 0
        self.overflows = 0
        self.remaining = None if mic.duration is None else round(mic.duration * mic.sample_rate)
        self.stream: Any = None
        self.convert: Any = None
        if mic.device_rate != mic.sample_rate:
            from rxkit.audio.convert import FrameConverter

            self.convert = FrameConverter(mic.sample_rate, mic.channels)
        self.watch = DeviceWatchdog(
            loop, mic.stall_s, f"the microphone {mic.device.name!r}", "delivered no audio", self._lost
        )

    def open(self) -> None:
        sd = sounddevice()
        mic = self.mic
        self.sd = sd
        try:
            self.stream = sd.RawInputStream(
                samplerate=mic.device_rate,
                blocksize=mic.device_rate * mic.block_ms // 1000,
                device=mic.device.index,
                channels=mic.channels,
                dtype="int16",
                latency=mic.latency,
                callback=self._callback,
                finished_callback=self.watch.finished,
            )
            self.stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self.close()
            self.observer.on_error(AudioDeviceError(f"could not open the microphone {mic.device.name!r}: {exc}"))
            return
        mic._captures.append(self)
        self.watch.arm(self.stream)

    def _lost(self, error: AudioDeviceError) -> None:
        if self.closed:
            return
        self.close()
        self.observer.on_error(error)

    # PortAudio's thread: keep it short; no locks, no logging.
    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        self.watch.beats += 1
        mic = self.mic
        frame = AudioFrame(bytes(indata), mic.device_rate, mic.channels, time.monotonic() - frames / mic.device_rate)
        queue = self.queue
        if len(queue) == queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        queue.append(frame)
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                raise self.sd.CallbackAbort from None

    # The loop's thread.
    def _drain(self) -> None:
        self.scheduled = False  # before popping: a block appended meanwhile schedules a new drain
        queue, observer = self.queue, self.observer
        while queue and not self.closed:
            frame = queue.popleft()
            if self.convert is not None:
                frame = self.convert(frame)
            last = False
            if self.remaining is not None:
                frame, last = self._count(frame)
            try:
                observer.on_next(frame)
            except Exception as exc:  # noqa: BLE001 - a failing downstream ends the capture, typed
                self.close()
                observer.on_error(exc)
                return
            if last:
                self.close()
                observer.on_completed()
                return

    def _count(self, frame: AudioFrame) -> tuple[AudioFrame, bool]:
        """Count ``frame`` against ``duration``; cut the last one to length."""
        assert self.remaining is not None
        width = 2 * frame.channels
        n = len(frame.pcm) // width
        if n < self.remaining:
            self.remaining -= n
            return frame, False
        pcm = frame.pcm[: self.remaining * width]
        self.remaining = 0
        return AudioFrame(pcm, frame.sample_rate, frame.channels, frame.timestamp), True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.watch.disarm()
        self.queue.clear()
        stream, self.stream = self.stream, None
        if stream is not None:
            # abort: stop at once, without waiting for buffered input; closing ends PortAudio's thread.
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        self.mic._closed(self)


def microphone(
    device: int | str | None = None,
    sample_rate: int = 16000,
    channels: int = 1,
    block_ms: int = 20,
    maxsize: int = 50,
    *,
    latency: float | str | None = None,
    duration: float | None = None,
    stall_s: float = 2.0,
) -> Microphone:
    """An observable of :class:`~rxkit.elements.AudioFrame` blocks from an input device.

    ``device``: an index, a piece of the device's name, or None for the
    default; an unknown device raises :class:`~rxkit.errors.AudioDeviceError`
    here, listing the devices there are. ``block_ms``: the length of each
    frame (20 ms fits the VAD). ``maxsize``: how many blocks may wait for a
    busy event loop before the oldest are dropped (counted in ``.dropped``).
    ``latency``: PortAudio's latency hint (seconds, ``"low"`` or ``"high"``).
    ``duration``: complete after this many seconds of audio (None: never).
    A device that stops delivering audio for ``stall_s`` seconds, or whose
    stream ends by itself (unplugged), fails the stream with
    :class:`~rxkit.errors.AudioDeviceError` naming it.

    It needs a running asyncio loop (or an ``AsyncIOScheduler`` at subscribe).

    >>> mic = microphone("pulse", sample_rate=16000)        # doctest: +SKIP
    >>> frames = await rxkit.arun(microphone(duration=1.0))  # doctest: +SKIP
    """
    return Microphone(device, sample_rate, channels, block_ms, maxsize, latency, duration, stall_s)
