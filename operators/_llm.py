"""The ``llm`` stage: stream each turn's answer from a provider, one turn after another."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import GraphError, ProviderError, RxkitError, StreamError
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._one_turn_at_a_time import MAX_PENDING, one_turn_at_a_time
from rxkit.providers.base import Provider
from rxkit.turn import Turn
from rxkit.types import ChatRequest, ChatResponse, Message

__all__ = ["llm"]


def llm(provider: Provider, *, max_pending: int = MAX_PENDING) -> Stage[Turn, Element]:
    """Stream each :class:`~rxkit.turn.Turn`'s answer from ``provider``.

    Turns run one after another (:func:`~rxkit.operators.one_turn_at_a_time`):
    the next turn's request is sent when the previous answer ended; at most
    ``max_pending`` inputs wait meanwhile. :class:`~rxkit.elements.TextDelta` and
    :class:`~rxkit.elements.ToolCallElement` pass through as they arrive; the
    provider's final response goes into ``turn.response`` and out as
    ``EndOfTurn(response, turn)``. A turn without ``request`` (no
    ``assemble_prompt`` before) is sent ``[*history, user]``. Disposing the
    subscription cancels the provider stream; an urgent control element
    (:class:`~rxkit.elements.Interrupt`) cancels the turn in flight and passes
    on at once. The stage publishes no events of its own: the provider
    publishes its calls on the bus it was built with.

    >>> from rxkit.providers.mock import MockProvider
    >>> answer = llm(MockProvider(["Paris"]))
    """

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
        one_turn_at_a_time(run_turn, max_pending=max_pending),
        StageKind.TRANSFORM,
        f"stream answers from {getattr(provider, 'name', 'a provider')}",
    )


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
