"""The ``llm`` stage: stream each turn's answer from a provider, one turn after another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from rxkit.buffering import BoundedBuffer, OverflowPolicy
from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import BufferOverflowError, GraphError, ProviderError, RxkitError, StreamError
from rxkit.graph.stage import Stage, StageKind
from rxkit.providers.base import Provider
from rxkit.telemetry.events import EventBus
from rxkit.turn import Turn
from rxkit.types import ChatRequest, ChatResponse, Message

__all__ = ["llm", "serial_map"]

MAX_PENDING = 10_000
"""How many inputs may wait for the turn in flight before the stream fails with BufferOverflowError."""


def llm(provider: Provider, *, bus: EventBus | None = None, max_pending: int = MAX_PENDING) -> Stage[Turn, Element]:
    """Stream each :class:`~rxkit.turn.Turn`'s answer from ``provider``.

    Turns run one after another (concat): the next turn's request is sent
    when the previous answer ended. :class:`~rxkit.elements.TextDelta` and
    :class:`~rxkit.elements.ToolCallElement` pass through as they arrive; the
    provider's final response goes into ``turn.response`` and out as
    ``EndOfTurn(response, turn)``. A turn without ``request`` (no
    ``assemble_prompt`` before) is sent ``[*history, user]``. Disposing the
    subscription cancels the provider stream; an urgent control element
    (:class:`~rxkit.elements.Interrupt`) cancels the turn in flight and passes
    on at once. Provider events go to the provider's own bus (``bus`` is kept
    for a uniform signature).

    >>> from rxkit.providers.mock import MockProvider
    >>> answer = llm(MockProvider(["Paris"]))
    """
    _ = bus

    def run_turn(item: Any) -> Observable[Element]:
        if isinstance(item, Turn):
            return _turn_stream(provider, item)
        if isinstance(item, Element):
            return reactivex.of(item)  # control and other elements pass through, in order
        return reactivex.throw(
            GraphError(f"llm expects a Turn (put load_state before it), not {type(item).__name__}", stage="llm")
        )

    return Stage(
        "llm",
        serial_map(run_turn, max_pending=max_pending, cancel_on=_is_urgent),
        StageKind.TRANSFORM,
        f"stream answers from {getattr(provider, 'name', 'a provider')}",
    )


def _is_urgent(item: Any) -> bool:
    return getattr(item, "urgent", False) is True


def _turn_stream(provider: Provider, turn: Turn) -> Observable[Element]:
    def subscribe(observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None) -> Any:
        name = getattr(provider, "name", "provider")
        request = turn.request or ChatRequest(messages=[*turn.history, turn.user])
        parts: list[str] = []  # only used when a provider's EndOfTurn has no response
        calls: list[Any] = []
        ended = [False]

        def on_next(element: Element) -> None:
            if ended[0]:
                return
            if isinstance(element, EndOfTurn):
                ended[0] = True
                response = element.response or ChatResponse(
                    message=Message.assistant("".join(parts), calls),
                    provider=name,
                    model=getattr(provider, "model", ""),
                )
                turn.response = response
                observer.on_next(EndOfTurn(response, turn))
                observer.on_completed()  # the turn is over even if the provider lingers
                return
            if type(element) is TextDelta:
                parts.append(element.text)
            elif type(element) is ToolCallElement:
                calls.append(element.call)
            observer.on_next(element)

        def on_error(error: Exception) -> None:
            if not ended[0]:
                ended[0] = True
                observer.on_error(error)

        def on_completed() -> None:
            if not ended[0]:
                ended[0] = True
                observer.on_error(
                    StreamError(
                        f"provider {name!r} ended the stream without an end of turn",
                        provider=name,
                        partial="".join(parts),
                    )
                )

        try:
            stream = provider.stream(request)
        except Exception as exc:  # noqa: BLE001 - a provider that raises becomes on_error
            error = exc if isinstance(exc, RxkitError) else ProviderError(f"provider {name!r} failed: {exc!r}")
            observer.on_error(error)
            return Disposable()
        return stream.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

    return Observable(subscribe)


def serial_map(
    project: Callable[[Any], Observable[Any]],
    *,
    max_pending: int = MAX_PENDING,
    cancel_on: Callable[[Any], bool] | None = None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """``concat_map`` with a bounded queue: ``project(x)`` runs to completion before the next input starts.

    Inputs that arrive meanwhile wait in a :class:`~rxkit.buffering.BoundedBuffer`
    of ``max_pending`` (overflow fails the stream with BufferOverflowError;
    control elements are never dropped). An input for which ``cancel_on``
    is true disposes the inner stream in flight and runs next. Synchronous
    inner streams are drained in a loop, not by recursion.
    """

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            pending: BoundedBuffer[Any] = BoundedBuffer(max_pending, OverflowPolicy.ERROR)
            inner = SerialDisposable()
            upstream = SerialDisposable()
            state = {"active": False, "draining": False, "source_done": False, "stopped": False}
            generation = [0]

            def fail(error: Exception) -> None:
                if state["stopped"]:
                    return
                state["stopped"] = True
                upstream.dispose()
                inner.dispose()
                observer.on_error(error)

            def inner_done(gen: int) -> Callable[[], None]:
                def done() -> None:
                    if gen == generation[0]:
                        state["active"] = False
                        drain()

                return done

            def start(item: Any) -> None:
                try:
                    stream = project(item)
                except Exception as exc:  # noqa: BLE001 - becomes on_error
                    fail(exc)
                    return
                generation[0] += 1
                gen = generation[0]
                state["active"] = True

                def on_error(error: Exception) -> None:
                    if gen == generation[0]:
                        fail(error)

                inner.disposable = stream.subscribe(observer.on_next, on_error, inner_done(gen), scheduler=scheduler)

            def drain() -> None:
                if state["draining"]:
                    return  # the loop below picks up what a synchronous inner stream left
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

            def on_next(item: Any) -> None:
                if state["stopped"]:
                    return
                if cancel_on is not None and state["active"] and cancel_on(item):
                    generation[0] += 1  # the cancelled stream's late signals are ignored
                    state["active"] = False
                    inner.disposable = Disposable()
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
