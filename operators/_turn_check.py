"""The frame shared by the stages that check each turn's text and may end the stream early.

``validate_output`` and ``parse_structured`` both pass elements on while they
look at a turn's text, check the whole turn at its end (or at completion, if
the last turn had no end of turn), and stop the stream at the first failure:
the upstream subscription is disposed first (so the provider request is
cancelled before anyone reacts), then ``on_error`` goes out, and nothing
after it. This module holds that shape once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

__all__ = ["TurnCheck"]


class TurnCheck:
    """One subscription of a turn-checking stage: its stop flag, its open-turn flag and its failure path.

    ``open`` says text arrived since the last end of turn (the stage sets it);
    ``stopped`` is set once the stream ended, after which every input is ignored.

    >>> import reactivex
    >>> out = []
    >>> def subscribe(observer, scheduler=None):
    ...     check = TurnCheck(observer)
    ...     def on_next(x):
    ...         if not check.stopped:
    ...             check.open = True
    ...             observer.on_next(x)
    ...     return check.subscribe(reactivex.of(1, 2), on_next, lambda: out.append("checked") or True, scheduler)
    >>> _ = reactivex.create(subscribe).subscribe(out.append, on_completed=lambda: out.append("done"))
    >>> out
    [1, 2, 'checked', 'done']
    """

    __slots__ = ("observer", "upstream", "stopped", "open")

    def __init__(self, observer: abc.ObserverBase[Any]) -> None:
        self.observer = observer
        self.upstream = SingleAssignmentDisposable()
        self.stopped = False
        self.open = False

    def fail(self, error: Exception) -> None:
        """End the stream with ``error``: upstream disposed first, then ``on_error``."""
        self.stopped = True
        self.upstream.dispose()
        self.observer.on_error(error)

    def subscribe(
        self,
        source: Observable[Any],
        on_next: Callable[[Any], None],
        finish: Callable[[], bool],
        scheduler: abc.SchedulerBase | None,
    ) -> SingleAssignmentDisposable:
        """Subscribe to ``source``; at completion an open turn is checked by ``finish`` (False: it failed)."""

        def on_error(error: Exception) -> None:
            if not self.stopped:
                self.stopped = True
                self.observer.on_error(error)

        def on_completed() -> None:
            if self.stopped or (self.open and not finish()):
                return
            self.stopped = True
            self.observer.on_completed()

        self.upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
        return self.upstream
