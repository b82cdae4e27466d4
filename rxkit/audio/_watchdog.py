"""The device-loss watchdog that the microphone and the speaker share.

A device that disappears mid-session either ends its PortAudio stream (the
stream's finished callback) or just stops calling back (ALSA, PulseAudio):
either way the session must end with an error naming the device, not a
silent wait. The stream's callback counts blocks in :attr:`DeviceWatchdog.beats`
(one integer add per block, on PortAudio's thread); the watchdog looks at the
count from the event loop every quarter of ``stall_s``.

A count that stands still is not enough to call the device gone: on a busy
machine PortAudio's thread can wait a second or more for the GIL or a core
(measured in the live voice tests on 2 loaded cores: callback gaps up to 1.2 s,
and a plain Python thread in the same process lagged exactly then). Such a
stall holds up the event loop too, so the watchdog only counts time during
which its own ticks came on time, and it asks the stream itself: one that is
no longer active has stopped. (``stream.time`` cannot settle it: through
ALSA's PulseAudio plugin it is the system clock, and it runs on while the
sink is suspended.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rxkit.errors import AudioDeviceError

__all__ = ["DeviceWatchdog"]


class DeviceWatchdog:
    """Fails a device stream that stopped by itself or stopped calling back for ``stall_s`` seconds.

    ``device``: how the error names it (``"the speaker 'pulse'"``); ``silent``:
    what a stall is called (``"took no audio"``); ``on_lost`` gets the
    :class:`~rxkit.errors.AudioDeviceError`. Pass :meth:`finished` as the
    stream's ``finished_callback``, add 1 to :attr:`beats` in its callback,
    :meth:`arm` once the stream runs and :meth:`disarm` before stopping it on
    purpose::

        watch = DeviceWatchdog(loop, 2.0, "the speaker 'pulse'", "took no audio", fail)
        stream = sd.RawOutputStream(..., callback=cb, finished_callback=watch.finished)
        stream.start()
        watch.arm(stream)          # cb does: watch.beats += 1
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stall_s: float,
        device: str,
        silent: str,
        on_lost: Callable[[AudioDeviceError], None],
    ) -> None:
        self.loop = loop
        self.stall_s = stall_s
        self.device = device
        self.silent = silent
        self.on_lost = on_lost
        self.beats = 0  # the stream's callbacks so far (PortAudio's thread writes, the loop reads)
        self.tick_s = stall_s / 4
        self.stream: Any = None
        self.armed = False
        self.timer: asyncio.TimerHandle | None = None
        self.seen = 0  # beats at the last tick
        self.since = 0.0  # loop time since which the beats stood still, counting only punctual ticks
        self.last = 0.0  # loop time of the last tick

    def arm(self, stream: Any) -> None:
        """Watch ``stream``, which has just been started (the loop's thread)."""
        self.disarm()
        self.stream = stream
        self.armed = True
        self.seen = self.beats
        self.since = self.last = self.loop.time()
        self.timer = self.loop.call_later(self.tick_s, self._tick)

    def disarm(self) -> None:
        """Stop watching: the stream is stopped on purpose (the loop's thread)."""
        self.armed = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def finished(self) -> None:
        """The stream's ``finished_callback`` (PortAudio's thread): it stopped, for whatever reason."""
        if self.armed:
            try:
                self.loop.call_soon_threadsafe(self._stopped)
            except RuntimeError:
                pass  # the loop is closed: nobody is listening any more

    def _stopped(self) -> None:
        # Stopped on purpose (disarmed), or aborted and started again since (active): nothing lost.
        if self.armed and not self.stream.active:
            self._lose("stopped")

    def _tick(self) -> None:
        self.timer = None
        if not self.armed:
            return
        now = self.loop.time()
        # A tick that came late shows the whole process was held up (GIL, CPU): PortAudio's thread
        # was held up with it, so the time without callbacks starts again from here.
        held_up = now - self.last > 2 * self.tick_s
        self.last = now
        if self.beats != self.seen or held_up:
            self.seen, self.since = self.beats, now
        elif not self.stream.active:
            self._lose("stopped")
            return
        elif now - self.since >= self.stall_s - 1e-3:
            self._lose(f"{self.silent} for {self.stall_s:g} s")
            return
        self.timer = self.loop.call_later(self.tick_s, self._tick)

    def _lose(self, what: str) -> None:
        self.disarm()
        self.on_lost(AudioDeviceError(f"{self.device} {what}: was it unplugged or taken away?"))
