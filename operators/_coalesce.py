"""coalesce: join consecutive text deltas into fewer, larger ones for slow consumers.

A batch starts with the first :class:`~rxkit.elements.TextDelta` after a
flush and is emitted as one ``TextDelta`` (texts joined) when ``window``
seconds have passed since it started (a timer on the scheduler), when it
holds ``count`` deltas, or when anything else arrives: any other element
(controls included) first flushes the batch, then passes through in order.
Completion and errors flush the batch first; dispose cancels the timer.
Only exact ``TextDelta`` instances are joined (a subclass may carry fields
that joining would lose). A batch never holds more than ``_MAX_PARTS``
deltas, whatever the window.
"""

from __future__ import annotations

from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from rxkit.elements import TextDelta
from rxkit.errors import ConfigError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import resolve_scheduler

__all__ = ["coalesce"]

_MAX_PARTS = 4096


def coalesce(
    window: float | None = None, count: int | None = None, scheduler: abc.SchedulerBase | None = None
) -> Stage[Any, Any]:
    """Batch consecutive ``TextDelta`` elements per ``window`` seconds and/or per ``count`` deltas.

    Non-text elements flush the batch and pass through in order; completion
    and errors flush it first. At least one of ``window`` and ``count`` is
    required (``ConfigError`` otherwise). ``scheduler`` runs the window's
    timer; it defaults to the subscribe-time scheduler, then the running loop.

    >>> import reactivex, reactivex.operators as ops
    >>> from rxkit.elements import TextDelta
    >>> texts = ops.map(lambda d: d.text)
    >>> reactivex.of(*map(TextDelta, "abcde")).pipe(coalesce(count=2), texts, ops.to_list()).run()
    ['ab', 'cd', 'e']
    """
    if window is None and count is None:
        raise ConfigError("coalesce needs a window (seconds) or a count, or both")
    if window is not None and not window > 0:
        raise ConfigError(f"coalesce window must be a positive number of seconds, not {window!r}")
    if count is not None and count < 1:
        raise ConfigError(f"coalesce count must be at least 1, not {count!r}")
    limit = min(count, _MAX_PARTS) if count is not None else _MAX_PARTS

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
            sch = resolve_scheduler(scheduler, sub_scheduler) if window is not None else None
            span = window or 0.0
            pending: list[TextDelta] = []
            timer = SerialDisposable()

            def flush() -> None:
                if not pending:
                    return
                out = pending[0] if len(pending) == 1 else TextDelta("".join([d.text for d in pending]))
                pending.clear()
                timer.disposable = None  # cancels the window's timer
                observer.on_next(out)

            def on_timer(_: abc.SchedulerBase, __: Any = None) -> None:
                flush()

            def on_next(value: Any) -> None:
                if type(value) is TextDelta:
                    pending.append(value)
                    if len(pending) >= limit:
                        flush()
                    elif sch is not None and len(pending) == 1:
                        timer.disposable = sch.schedule_relative(span, on_timer)
                    return
                flush()
                observer.on_next(value)

            def on_error(error: Exception) -> None:
                flush()
                observer.on_error(error)

            def on_completed() -> None:
                flush()
                observer.on_completed()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    parts = [f"window={window}" if window is not None else "", f"count={count}" if count is not None else ""]
    return Stage(f"coalesce({', '.join(p for p in parts if p)})", operator, StageKind.ACCUMULATE)
