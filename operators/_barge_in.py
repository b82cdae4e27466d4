"""barge_in: the user speaks while the assistant holds the floor -> interrupt the reply."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import Interrupt, SpeechStarted, SpeechStopped
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage, StageKind

__all__ = ["BARGE_IN_STRATEGIES", "BargeIn", "barge_in"]

BARGE_IN_STRATEGIES = ("immediate", "after_sentence", "ignore")
"""What user speech during a reply does: stop it at once, stop it after the sentence playing, or nothing."""


class BargeIn(Interrupt):
    """An :class:`~rxkit.elements.Interrupt` caused by the user speaking over the assistant.

    Every stage treats it as an Interrupt (model call, tools and synthesis are
    cancelled, queued audio dropped); ``strategy`` ``"after_sentence"`` tells
    :func:`playout` to let the sentence playing finish first.
    """

    __slots__ = ("strategy",)

    def __init__(self, strategy: str = "immediate") -> None:
        self.reason = "barge-in"
        self.strategy = strategy


def barge_in(floor: Floor, strategy: str = "immediate") -> Stage[Any, Any]:
    """Put after ``turn_detector()``: on :class:`SpeechStarted` while the assistant is busy, emit a :class:`BargeIn`.

    Busy means a reply is being prepared or played (see :class:`Floor`).
    ``strategy``: ``"immediate"`` stops the reply at once, ``"after_sentence"``
    once the sentence playing has ended, ``"ignore"`` lets it go on (what the
    user said is answered after it). The BargeIn goes out just before the
    SpeechStarted; it is urgent, so it passes every queue on its way. Each
    :class:`SpeechStopped` of a kept turn is noted on the ``floor`` (the end
    of the user's speech, for the latency figures). Everything passes through.

    >>> stage = barge_in(Floor(), "after_sentence")
    """
    if strategy not in BARGE_IN_STRATEGIES:
        raise ConfigError(f"barge-in strategy must be one of {', '.join(BARGE_IN_STRATEGIES)}, not {strategy!r}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            def on_next(x: Any) -> None:
                if isinstance(x, SpeechStarted):
                    if strategy != "ignore" and floor.busy:
                        floor.reply_over(None)  # every reply in flight is being cut
                        observer.on_next(BargeIn(strategy))
                elif isinstance(x, SpeechStopped) and not x.discarded:
                    floor.speech_stopped(x.timestamp)
                observer.on_next(x)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return Stage("barge_in", operator, StageKind.TRANSFORM, f"user speech interrupts the reply: {strategy}")
