"""The ``save_state`` stage: store a finished turn, then let its EndOfTurn go on."""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable

from rxkit.buffering import BoundedBuffer, OverflowPolicy
from rxkit.elements import Element, EndOfTurn
from rxkit.errors import BufferOverflowError, RxkitError, StateError
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._one_turn_at_a_time import MAX_PENDING
from rxkit.scheduling import loop_of
from rxkit.state.base import StateStore
from rxkit.telemetry.events import EventBus, StateSaved, default_bus

__all__ = ["save_state"]


def save_state(
    store: StateStore | None = None, *, bus: EventBus | None = None, max_pending: int = MAX_PENDING
) -> Stage[Element, Element]:
    """On ``EndOfTurn(response, turn)``, append ``turn.messages_to_save()`` to ``store``, then pass it on.

    The append is one atomic ``append_turn`` with ``expected_length`` set to
    the history the turn was built from, so a concurrent writer on the same
    session fails the stream with :class:`~rxkit.errors.StateError` instead
    of interleaving; the error's ``response`` keeps the answer that was not
    saved. (:class:`~rxkit.graphs.Conversation` queues the turns of a session
    so that they never conflict in one process.) Only after the store confirms is the EndOfTurn passed on
    (and :class:`~rxkit.telemetry.events.StateSaved` published): whoever sees it can
    rely on the turn being stored. Elements arriving meanwhile wait, in
    order, in a buffer of ``max_pending``. A turn that fails or is disposed
    before its EndOfTurn arrives saves nothing. With no store, everything
    passes through.

    >>> from rxkit.state.memory import MemoryStore
    >>> stage = save_state(MemoryStore())
    """
    events = bus if bus is not None else default_bus

    def operator(source: Observable[Element]) -> Observable[Element]:
        if store is None:
            return source

        def subscribe(observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None) -> Any:
            held: BoundedBuffer[Element] = BoundedBuffer(max_pending, OverflowPolicy.ERROR)
            upstream = SingleAssignmentDisposable()
            saving: list[asyncio.Task[int]] = []
            end: list[Exception | None] = []  # the upstream's terminal signal, held while a save runs
            stopped = [False]

            def fail(error: Exception) -> None:
                if stopped[0]:
                    return
                stopped[0] = True
                upstream.dispose()
                cancel()
                observer.on_error(error)

            def cancel() -> None:
                for task in saving:
                    task.cancel()
                saving.clear()

            def process(element: Element) -> None:
                if saving:
                    try:
                        held.offer(element)
                    except BufferOverflowError as exc:
                        fail(exc)
                    return
                turn = element.turn if isinstance(element, EndOfTurn) else None
                if turn is None or turn.response is None:
                    observer.on_next(element)
                    return
                messages = turn.messages_to_save()
                try:
                    loop = loop_of(scheduler)
                    task = loop.create_task(
                        store.append_turn(turn.session, messages, expected_length=len(turn.history))
                    )
                except RxkitError as exc:
                    fail(exc)
                    return
                saving.append(task)
                task.add_done_callback(lambda t: saved(t, element, turn.session, len(messages)))

            def saved(task: asyncio.Task[int], element: Element, session: str, count: int) -> None:
                if task.cancelled():
                    return
                exc = task.exception()  # retrieved even when nobody waits any more
                if stopped[0] or task not in saving:
                    return
                saving.clear()
                if exc is not None:
                    error = exc if isinstance(exc, RxkitError) else StateError(f"saving {session!r} failed: {exc!r}")
                    if isinstance(error, StateError) and isinstance(element, EndOfTurn):
                        error.response = element.response  # the streamed answer is not lost with the turn
                    fail(error)
                    return
                events.publish(StateSaved(session=session, messages=count))
                observer.on_next(element)
                while not saving and not stopped[0]:  # release what waited, until the next save
                    ok, item = held.poll()
                    if not ok:
                        break
                    process(item)
                if not saving and end and not stopped[0]:
                    finish(end[0])

            def finish(error: Exception | None) -> None:
                stopped[0] = True
                if error is None:
                    observer.on_completed()
                else:
                    observer.on_error(error)

            def on_next(element: Element) -> None:
                if not stopped[0]:
                    process(element)

            def on_terminal(error: Exception | None) -> None:
                if stopped[0]:
                    return
                if saving:
                    end.append(error)  # the turn before it finished: let its save complete first
                else:
                    finish(error)

            upstream.disposable = source.subscribe(on_next, on_terminal, lambda: on_terminal(None), scheduler=scheduler)
            return CompositeDisposable(upstream, Disposable(cancel))

        return Observable(subscribe)

    return Stage("save_state", operator, StageKind.TRANSFORM, "store each finished turn")
