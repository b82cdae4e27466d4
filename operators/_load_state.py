"""The ``load_state`` stage: start a turn for each user input, with the session's history."""

from __future__ import annotations

import asyncio
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.elements import Element, MessageElement
from rxkit.errors import GraphError, RxkitError, StateError
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._one_turn_at_a_time import MAX_PENDING, one_turn_at_a_time
from rxkit.scheduling import loop_of
from rxkit.state.base import StateStore
from rxkit.telemetry.events import EventBus, StateLoaded, default_bus
from rxkit.turn import Turn
from rxkit.types import Message

__all__ = ["load_state"]


def load_state(
    store: StateStore | None = None,
    session: str = "default",
    *,
    variables: dict[str, Any] | None = None,
    bus: EventBus | None = None,
    max_pending: int = MAX_PENDING,
) -> Stage[str | Message, Turn]:
    """Turn each user input (a str, a :class:`~rxkit.types.Message` or a
    :class:`~rxkit.elements.MessageElement`) into a :class:`~rxkit.turn.Turn`
    whose ``history`` is the session's, loaded from ``store`` when the turn
    starts (publishes :class:`~rxkit.telemetry.events.StateLoaded`).

    Inputs are handled one at a time, in order. With no store, history is
    empty and nothing needs an event loop. Turns and other elements pass
    through; anything else fails the stream with a GraphError.

    >>> from rxkit.state.memory import MemoryStore
    >>> stage = load_state(MemoryStore(), "alice", variables={"name": "Alice"})
    """
    events = bus if bus is not None else default_bus
    fixed = dict(variables or {})

    def start_turn(item: Any) -> Observable[Any]:
        if isinstance(item, str):
            user = Message.user(item)
        elif isinstance(item, Message):
            user = item
        elif isinstance(item, MessageElement):
            user = item.message
        elif isinstance(item, (Turn, Element)):
            return reactivex.of(item)
        else:
            return reactivex.throw(
                GraphError(f"load_state expects a str or a Message, not {type(item).__name__}", stage="load_state")
            )
        if store is None:
            return reactivex.of(Turn(user, session=session, variables=fixed))
        return _loaded_turn(store, session, user, fixed, events)

    return Stage(
        "load_state",
        # Loads are short and not cancelled: an urgent element only jumps the queue; llm or tool_loop cancels the turn.
        one_turn_at_a_time(start_turn, max_pending=max_pending, cancel_on=None),
        StageKind.TRANSFORM,
        f"start turns of session {session!r}",
    )


def _loaded_turn(
    store: StateStore, session: str, user: Message, variables: dict[str, Any], events: EventBus
) -> Observable[Turn]:
    def subscribe(observer: abc.ObserverBase[Turn], scheduler: abc.SchedulerBase | None = None) -> Any:
        try:
            loop = loop_of(scheduler)
        except RxkitError as exc:
            observer.on_error(exc)
            return Disposable()
        task = loop.create_task(store.load(session))

        def done(t: asyncio.Task[list[Message]]) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if isinstance(exc, BaseException):
                error = (
                    exc if isinstance(exc, RxkitError) else StateError(f"loading session {session!r} failed: {exc!r}")
                )
                observer.on_error(error)
                return
            history = t.result()
            events.publish(StateLoaded(session=session, messages=len(history)))
            observer.on_next(Turn(user, session=session, history=history, variables=variables))
            observer.on_completed()

        task.add_done_callback(done)

        def dispose() -> None:
            task.cancel()

        return Disposable(dispose)

    return Observable(subscribe)
