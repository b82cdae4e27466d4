"""duplex_gate: half-duplex for a desktop without echo cancellation: the mic is deaf while the assistant speaks."""

from __future__ import annotations

import time
from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import AudioFrame
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage, StageKind

__all__ = ["duplex_gate"]


def duplex_gate(floor: Floor, *, headphones: bool = False, echo_tail_ms: float = 300) -> Stage[Any, Any]:
    """Put before ``vad()``: while a reply plays (and ``echo_tail_ms`` after), input audio becomes silence.

    A desktop speaker is heard by its own microphone; without echo
    cancellation the assistant would hear itself and interrupt itself. So by
    default (half-duplex) the user's speech during playback is not heard.
    Frames are replaced by silence of the same length, not dropped, so the
    turn detector ends a turn that was under way by its silence rule and the
    audio clock stays continuous. ``headphones=True`` (full duplex) lets all
    audio through, so the user can barge in. Every frame's arrival is noted
    on the ``floor`` for the latency figures; other elements pass through.

    >>> gate = duplex_gate(Floor(), headphones=False)
    """
    if echo_tail_ms < 0:
        raise ConfigError(f"echo_tail_ms must be zero or more, not {echo_tail_ms}")
    tail = echo_tail_ms / 1000

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            zeros: dict[int, bytes] = {}  # one silent block per frame size

            def on_next(x: Any) -> None:
                if isinstance(x, AudioFrame):
                    now = time.monotonic()
                    floor.heard(x.timestamp + x.duration, now)
                    if not headphones and floor.deaf(now, tail):
                        pcm = x.pcm
                        size = len(pcm) if isinstance(pcm, (bytes, bytearray, memoryview)) else int(pcm.nbytes)
                        silent = zeros.get(size)
                        if silent is None:
                            if len(zeros) >= 16:  # bounded: a source whose block size keeps changing
                                zeros.clear()
                            silent = zeros[size] = bytes(size)
                        x = AudioFrame(silent, x.sample_rate, x.channels, x.timestamp)
                observer.on_next(x)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    mode = "full duplex (headphones)" if headphones else f"half duplex, echo tail {echo_tail_ms:g} ms"
    return Stage("duplex_gate", operator, StageKind.TRANSFORM, mode)
