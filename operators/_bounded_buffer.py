"""bounded_buffer: decouple a fast producer from a slower consumer.

Design. The producer's ``on_next`` only puts the element in a
:class:`~rxkit.buffering.BoundedBuffer` and, if none is pending, schedules a
drain on the scheduler; it never runs the consumer's work inline. Each drain
turn hands *one* element downstream and schedules the next turn, so the loop
runs other ready work (the producer's socket reads, timers) between two
elements: the buffer fills exactly when the consumer is slower, and the
overflow policy decides what happens then.

* ``drop_oldest`` / ``drop_newest``: data is dropped (counted in
  :attr:`BufferStage.dropped`); control elements never are, and urgent ones
  (:class:`~rxkit.elements.Interrupt`) go ahead of queued data.
* ``error``: :class:`~rxkit.errors.BufferOverflowError` goes to ``on_error``
  at once (ahead of queued data: failing fast is the point) and the producer
  is unsubscribed.
* ``wait``: the buffer is the backpressure gate of the sources subscribed
  upstream (:func:`rxkit.buffering.backpressure`). An async source built with
  :func:`rxkit.scheduling.from_async_iterable` checks the gate before pulling
  each item and awaits :meth:`~rxkit.buffering.BoundedBuffer.wait_for_room`
  while it is full: the producer really stops until the drain turns have
  taken half the buffer. A push source that cannot wait overflows with
  ``BufferOverflowError``.

The consumer side takes items as it can: when our own consumer is itself a
waiting buffer (``Graph.astream``'s, or another ``bounded_buffer(..., "wait")``
downstream), a drain turn whose next element is data and finds that buffer
full waits for room before taking anything; a control element arriving
meanwhile cuts the wait short, so an ``Interrupt`` is never held back.

Upstream completion and errors wait behind queued elements: nothing is lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable, SingleAssignmentDisposable

from rxkit.buffering import BoundedBuffer, OverflowPolicy, backpressure, current_backpressure
from rxkit.errors import BufferOverflowError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import resolve_scheduler

__all__ = ["BufferStage", "bounded_buffer"]


class BufferStage(Stage[Any, Any]):
    """The stage ``bounded_buffer`` returns; ``dropped`` counts dropped data over all its subscriptions."""

    __slots__ = ("dropped",)

    def __init__(self, name: str, operator: Any, description: str = "") -> None:
        super().__init__(name, operator, StageKind.TRANSFORM, description)
        self.dropped = 0


def bounded_buffer(
    maxsize: int,
    policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
    scheduler: abc.SchedulerBase | None = None,
) -> BufferStage:
    """Queue at most ``maxsize`` data elements and hand them downstream on ``scheduler``.

    ``policy`` is what a full buffer does with one more data element:
    ``"drop_oldest"`` (default), ``"drop_newest"``, ``"error"``
    (``BufferOverflowError`` via ``on_error``) or ``"wait"`` (async sources
    upstream pause; see the module docstring). Control elements are never
    dropped; ``Interrupt`` passes ahead of queued data. The returned stage
    counts dropped elements in ``.dropped``. ``scheduler`` defaults to the
    subscribe-time scheduler, then the running asyncio loop.

    >>> from rxkit.operators import bounded_buffer
    >>> latest = bounded_buffer(8, "drop_oldest")
    >>> # tokens.pipe(latest, slow_ui_stage); later: latest.dropped
    """
    BoundedBuffer(maxsize, policy)  # check the arguments now, not at subscribe time

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
            sch = resolve_scheduler(scheduler, sub_scheduler)
            buf: BoundedBuffer[Any] = BoundedBuffer(maxsize, policy)
            upstream = SingleAssignmentDisposable()
            turn = SerialDisposable()
            scheduled = False
            waiting = False  # for room in our consumer's buffer; a control element cuts the wait short
            stopped = False
            terminal: list[Exception | None] = []  # upstream's end, delivered after the queue
            outer = current_backpressure()  # the gate of whatever consumes our output

            def finish() -> None:
                nonlocal stopped
                stopped = True
                if terminal[0] is None:
                    observer.on_completed()
                else:
                    observer.on_error(terminal[0])

            def drain(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal scheduled, waiting
                scheduled = waiting = False
                if stopped:
                    return
                if outer is not None and outer.full and _next_is_data(buf):
                    waiter = _room_in(outer)
                    if waiter is not None:  # our consumer's own buffer is full: take nothing until it has room
                        scheduled = waiting = True
                        turn.disposable = _Cancel(waiter)
                        waiter.add_done_callback(resume)
                        return
                ok, item = buf.poll()
                if ok:
                    if current_backpressure() is outer:
                        observer.on_next(item)
                    else:  # this turn inherited the producer's context: downstream sources obey our consumer's gate
                        with backpressure(outer):
                            observer.on_next(item)
                if stopped:
                    return
                if len(buf):
                    schedule_turn()
                elif terminal:
                    finish()

            def resume(waiter: asyncio.Future[None]) -> None:
                if not stopped and not waiter.cancelled():
                    schedule_turn()

            def schedule_turn() -> None:
                nonlocal scheduled
                scheduled = True
                turn.disposable = sch.schedule(drain)

            def on_next(value: Any) -> None:
                nonlocal stopped
                if stopped:
                    return
                before = buf.dropped
                try:
                    buf.offer(value)
                except BufferOverflowError as exc:
                    stopped = True
                    upstream.dispose()
                    turn.dispose()
                    buf.drain()
                    observer.on_error(exc)
                    return
                if buf.dropped != before:
                    stage_.dropped += buf.dropped - before
                if not scheduled or (waiting and getattr(value, "control", False)):
                    schedule_turn()  # (replacing the waiter cancels it)

            def on_end(error: Exception | None) -> None:
                if stopped or terminal:
                    return
                terminal.append(error)
                if not scheduled and not len(buf):
                    finish()

            def dispose() -> None:
                nonlocal stopped
                stopped = True
                upstream.dispose()
                turn.dispose()
                buf.drain()  # let go of queued elements now

            with backpressure(buf if buf.policy is OverflowPolicy.WAIT else None):
                upstream.disposable = source.subscribe(on_next, on_end, lambda: on_end(None), scheduler=sub_scheduler)
            return Disposable(dispose)

        return Observable(subscribe)

    stage_ = BufferStage(f"bounded_buffer({maxsize}, {OverflowPolicy(policy).value})", operator)
    return stage_


def _next_is_data(buf: BoundedBuffer[Any]) -> bool:
    ok, item = buf.peek()
    return ok and not getattr(item, "control", False)


def _room_in(gate: BoundedBuffer[Any]) -> asyncio.Future[None] | None:
    """A future done when ``gate`` has room again; None where no asyncio loop runs (then we push)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.create_task(gate.wait_for_room())


class _Cancel(Disposable):
    """Disposing cancels the future."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        super().__init__()
        self.future = future

    def dispose(self) -> None:
        self.future.cancel()
