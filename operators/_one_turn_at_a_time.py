"""one_turn_at_a_time: run each input's turn to its end before the next starts; an urgent input cancels.

The one turn machine of rxkit: the ``llm`` and ``tool_loop`` stages, ``load_state``,
the text-mode graph and the voice assistant stage all run their turns with it.
Inputs that arrive while a turn runs wait in a
:class:`~rxkit.buffering.BoundedBuffer` (control elements never count against
its bound, urgent ones go to its head); more than ``max_pending`` waiting fails
the stream with :class:`~rxkit.errors.BufferOverflowError`. A turn whose inner
stream completes synchronously is followed by the next in a loop, not by
recursion, so thousands of waiting inputs do not grow the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from rxkit.buffering import BoundedBuffer, OverflowPolicy
from rxkit.elements import is_control, is_urgent
from rxkit.errors import BufferOverflowError, ConfigError

__all__ = ["MAX_PENDING", "one_turn_at_a_time"]

MAX_PENDING = 10_000
"""How many inputs may wait for the turn in flight before the stream fails with BufferOverflowError."""


def one_turn_at_a_time(
    run_turn: Callable[[Any], Observable[Any]],
    *,
    max_pending: int = MAX_PENDING,
    cancel_on: Callable[[Any], bool] | None = is_urgent,
    is_turn: Callable[[Any], bool] | None = None,
    drop_waiting: bool = False,
    on_cancel: Callable[[Any], None] | None = None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Run ``run_turn(x)`` for each input ``x``, one turn at a time, in order, and pass on what the turns emit.

    A turn is the observable ``run_turn(x)``; the next input's turn starts when
    it completes. Inputs that arrive meanwhile wait, at most ``max_pending`` of
    them (beyond that the stream fails with
    :class:`~rxkit.errors.BufferOverflowError`; control elements are never
    dropped and do not count). With ``is_turn``, only the inputs it accepts are
    turns: the others pass on at once, ahead of the turn in flight.

    An input for which ``cancel_on`` holds (by default an urgent element,
    :func:`~rxkit.elements.is_urgent`, such as :class:`~rxkit.elements.Interrupt`)
    cancels the turn in flight: ``on_cancel`` is called with that turn's input,
    its stream is disposed, and nothing it sends later is passed on. With
    ``drop_waiting`` the waiting inputs go too (control elements stay). The
    urgent input is then handled as any other: a turn, at the head of the
    queue, or passed on at once.

    A turn that fails (``run_turn`` raising, or its stream's error) fails the
    stream, and so does the input's error. When the input completes, the turn
    in flight and those waiting still run; then the stream completes.
    Disposing the subscription disposes the input and the turn in flight;
    nothing more starts.

    >>> import reactivex, reactivex.operators as ops
    >>> answer = one_turn_at_a_time(lambda q: reactivex.of(f"{q}?", f"{q}!"))
    >>> reactivex.of("a", "b").pipe(answer, ops.to_list()).run()
    ['a?', 'a!', 'b?', 'b!']
    """
    if max_pending < 1:
        raise ConfigError(f"one_turn_at_a_time needs max_pending >= 1, not {max_pending}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            pending: BoundedBuffer[Any] = BoundedBuffer(max_pending, OverflowPolicy.ERROR)
            inner = SerialDisposable()
            upstream = SerialDisposable()
            state = {"active": False, "draining": False, "source_done": False, "stopped": False}
            generation = [0]  # bumped per turn and on cancel: a cancelled turn's late signals are ignored
            current: list[Any] = [None]  # the input of the turn in flight

            def fail(error: Exception) -> None:
                if state["stopped"]:
                    return
                state["stopped"] = True
                upstream.dispose()
                inner.dispose()
                observer.on_error(error)

            def start(item: Any) -> None:
                try:
                    stream = run_turn(item)
                except Exception as exc:  # noqa: BLE001 - a failing callback becomes on_error
                    fail(exc)
                    return
                generation[0] += 1
                gen = generation[0]
                state["active"] = True
                current[0] = item

                def on_error(error: Exception) -> None:
                    if gen == generation[0]:
                        fail(error)

                def on_completed() -> None:
                    if gen == generation[0]:
                        state["active"] = False
                        current[0] = None
                        drain()

                subscription = stream.subscribe(observer.on_next, on_error, on_completed, scheduler=scheduler)
                if gen == generation[0]:
                    inner.disposable = subscription
                else:  # its own output led to its cancel while it subscribed: it must not live on
                    subscription.dispose()

            def drain() -> None:
                if state["draining"]:
                    return  # the loop below picks up what a synchronous turn left
                state["draining"] = True
                try:
                    while not state["active"] and not state["stopped"]:
                        ok, item = pending.poll()
                        if not ok:
                            if state["source_done"]:
                                state["stopped"] = True
                                observer.on_completed()
                            break
                        start(item)
                finally:
                    state["draining"] = False

            def cancel() -> None:
                if state["active"]:
                    cancelled = current[0]
                    generation[0] += 1
                    state["active"] = False
                    current[0] = None
                    if on_cancel is not None:
                        try:
                            on_cancel(cancelled)
                        except Exception as exc:  # noqa: BLE001 - a failing callback becomes on_error
                            fail(exc)
                            return
                    inner.disposable = Disposable()
                if drop_waiting and len(pending):
                    for kept in [x for x in pending.drain() if is_control(x)]:
                        pending.offer(kept)

            def on_next(item: Any) -> None:
                if state["stopped"]:
                    return
                cancelled = cancel_on is not None and cancel_on(item)
                if cancelled:
                    cancel()
                    if state["stopped"]:
                        return
                if is_turn is not None and not is_turn(item):
                    observer.on_next(item)
                    if cancelled:
                        drain()  # the next turn starts (or the stream completes, if the input has)
                    return
                try:
                    pending.offer(item)
                except BufferOverflowError as exc:
                    fail(exc)
                    return
                drain()

            def on_completed() -> None:
                state["source_done"] = True
                drain()

            def dispose() -> None:
                state["stopped"] = True  # a drain loop in progress starts nothing more
                upstream.dispose()
                inner.dispose()

            upstream.disposable = source.subscribe(on_next, fail, on_completed, scheduler=scheduler)
            return Disposable(dispose)

        return Observable(subscribe)

    return operator
