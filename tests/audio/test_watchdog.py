"""The device-loss watchdog of the microphone and the speaker, on a real event loop with a stand-in stream.

The live side (a suspended PulseAudio sink or source really fails the stream) is in test_mic.py and
test_speaker.py; here the decisions: a stall, a stream that stopped, and a process that was held up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from rxkit.audio._watchdog import DeviceWatchdog
from rxkit.errors import AudioDeviceError
from tests.audio.pulse import wait_for

STALL_S = 0.2


class Beats:
    """A stand-in for PortAudio's thread: one callback every 5 ms while ``running`` is set."""

    def __init__(self, watch: DeviceWatchdog) -> None:
        self.running = threading.Event()
        self.running.set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(watch,), daemon=True)
        self.thread.start()

    def _run(self, watch: DeviceWatchdog) -> None:
        while not self.done.is_set():
            if self.running.wait(0.05):
                watch.beats += 1
                time.sleep(0.005)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def watchdog(errors: list[AudioDeviceError]) -> tuple[DeviceWatchdog, SimpleNamespace]:
    stream = SimpleNamespace(active=True)
    watch = DeviceWatchdog(asyncio.get_running_loop(), STALL_S, "the speaker 'x'", "took no audio", errors.append)
    watch.arm(stream)
    return watch, stream


async def test_callbacks_that_stop_while_the_process_runs_on_mean_the_device_is_lost() -> None:
    errors: list[AudioDeviceError] = []
    watch, _ = watchdog(errors)
    beats = Beats(watch)
    try:
        await asyncio.sleep(4 * STALL_S)
        assert errors == []  # callbacks coming: all well
        beats.running.clear()
        stalled = time.monotonic()
        await wait_for(lambda: errors, 5.0, "the device to be declared lost")
    finally:
        beats.stop()
    assert STALL_S <= time.monotonic() - stalled <= 2 * STALL_S + 0.2
    (error,) = errors
    assert str(error) == "the speaker 'x' took no audio for 0.2 s: was it unplugged or taken away?"
    assert watch.timer is None  # it stopped watching


async def test_a_process_held_up_longer_than_the_stall_limit_is_not_a_lost_device() -> None:
    """The whole process stops (GIL held, no core free), the event loop as well as PortAudio's thread,
    which (measured on 2 loaded cores) stalls a little before the loop and catches up a little after it
    (it first recovers from the underrun): callbacks stood still for 3.75x the limit, 3x while the
    loop itself could not run. That is a busy machine, not a lost device."""
    errors: list[AudioDeviceError] = []
    watch, _ = watchdog(errors)
    beats = Beats(watch)
    loop = asyncio.get_running_loop()

    def held_up() -> None:
        time.sleep(3 * STALL_S)  # blocks the loop, as a GIL-holding call or a starved process does
        loop.call_later(0.05, beats.running.set)

    try:
        await asyncio.sleep(2 * STALL_S)
        beats.running.clear()
        loop.call_later(0.1, held_up)
        await asyncio.sleep(6 * STALL_S)
        assert errors == []
        assert watch.armed
        beats.running.clear()  # and now the device really goes: still noticed
        await wait_for(lambda: errors, 5.0, "the device to be declared lost")
    finally:
        beats.stop()
    assert "took no audio for 0.2 s" in str(errors[0])


async def test_a_stream_that_stopped_by_itself_is_lost_and_one_stopped_on_purpose_is_not() -> None:
    errors: list[AudioDeviceError] = []
    watch, stream = watchdog(errors)
    beats = Beats(watch)
    try:
        # Aborted and started again (a speaker's flush): the finished callback comes, the stream runs.
        await asyncio.to_thread(watch.finished)
        await asyncio.sleep(0.05)
        assert errors == []
        # Stopped on purpose: disarmed first, so PortAudio's finished callback means nothing.
        watch.disarm()
        stream.active = False
        await asyncio.to_thread(watch.finished)
        await asyncio.sleep(3 * STALL_S)
        assert errors == []
        # Stopped by itself while watched (PortAudio's thread calls finished_callback).
        stream.active = True
        watch.arm(stream)
        stream.active = False
        await asyncio.to_thread(watch.finished)
        await wait_for(lambda: errors, 1.0, "the error")
    finally:
        beats.stop()
    (error,) = errors
    assert str(error) == "the speaker 'x' stopped: was it unplugged or taken away?"


async def test_an_inactive_stream_is_noticed_at_the_next_tick_without_a_finished_callback() -> None:
    errors: list[AudioDeviceError] = []
    watch, stream = watchdog(errors)
    stream.active = False  # some host APIs end a stream without calling finished_callback
    await wait_for(lambda: errors, 1.0, "the error")
    assert "stopped" in str(errors[0]) and not watch.armed
