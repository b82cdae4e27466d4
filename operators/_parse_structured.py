"""The ``parse_structured`` stage: a model's streamed text in, partial typed values out, then the validated one."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import EndOfTurn, Interrupt, PartialValue, TextDelta, TypedValue
from rxkit.errors import StructuredOutputError, describe_validation
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._turn_check import TurnCheck
from rxkit.structured import StreamingParser
from rxkit.telemetry.events import EventBus, StructuredResult, default_bus

__all__ = ["parse_structured"]


def parse_structured(
    target: Any, *, keep_text: bool = False, name: str = "parse_structured", bus: EventBus | None = None
) -> Stage[Any, Any]:
    """Parse each turn's :class:`~rxkit.elements.TextDelta` stream into ``target`` as it arrives.

    Put it after any ``llm`` stage (text or voice graph). Each delta that
    changes the value emits a :class:`~rxkit.elements.PartialValue` (strings
    fill in; numbers, booleans and enums appear once complete; in text order).
    At :class:`~rxkit.elements.EndOfTurn` (or completion) the value is
    validated: a :class:`~rxkit.elements.TypedValue` goes out just before the
    end of turn, or the stream ends with
    ``on_error(StructuredOutputError)`` carrying the raw text and the errors
    (retries with feedback are :class:`rxkit.typed.TypedFunction`'s job: a
    graph stage cannot ask the model again). ``keep_text=True`` also passes
    the deltas on. An :class:`~rxkit.elements.Interrupt` drops the turn's
    text. Other elements pass through. Publishes
    :class:`~rxkit.telemetry.events.StructuredResult` per turn.

    >>> from pydantic import BaseModel
    >>> class Reply(BaseModel):
    ...     answer: str
    ...     confidence: float
    >>> stage = parse_structured(Reply)
    """
    events = bus if bus is not None else default_bus
    kind = getattr(target, "__name__", None) or repr(target)
    StreamingParser(target)  # a type pydantic cannot handle fails here, when the graph is built

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            parser: list[StreamingParser] = [StreamingParser(target)]
            check = TurnCheck(observer)

            def finish() -> bool:
                p = parser[0]
                parser[0] = StreamingParser(target)
                check.open = False
                try:
                    value = p.finish()
                except Exception as exc:  # noqa: BLE001 - a ValidationError, or a validator of the user's type raising
                    errors = describe_validation(exc).split("; ") if hasattr(exc, "errors") else [str(exc)]
                    events.publish(StructuredResult(function=name, ok=False, attempts=1, mode="stream"))
                    check.fail(
                        StructuredOutputError(
                            f"{name}: the answer did not fit {kind}: {'; '.join(errors)}",
                            validator=name,
                            reason="; ".join(errors),
                            phase="output",
                            raw=p.text(),
                            errors=errors,
                            attempts=1,
                        )
                    )
                    return False
                events.publish(StructuredResult(function=name, ok=True, attempts=1, mode="stream"))
                observer.on_next(TypedValue(value))
                return True

            def on_next(element: Any) -> None:
                if check.stopped:
                    return
                if isinstance(element, TextDelta):
                    check.open = True
                    p = parser[0]
                    if p.feed(element.text):
                        observer.on_next(PartialValue(p.partial()))
                    if not keep_text:
                        return
                elif isinstance(element, EndOfTurn):
                    if not finish():
                        return
                elif isinstance(element, Interrupt):
                    parser[0] = StreamingParser(target)
                    check.open = False
                observer.on_next(element)

            return check.subscribe(source, on_next, finish, scheduler)

        return reactivex.create(subscribe)

    return Stage(name, operator, StageKind.TRANSFORM, "parse the answer into a typed value as it streams")
