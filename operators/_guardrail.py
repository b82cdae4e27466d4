"""The ``guardrail`` stage: validators and redactors on the user's input, the model's output, or both."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import ConfigError
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._validate_input import validate_input
from rxkit.operators._validate_output import validate_output
from rxkit.telemetry.events import EventBus
from rxkit.turn import Turn
from rxkit.types import TextPart
from rxkit.validation import as_validators

__all__ = ["Redactor", "guardrail"]

Direction = Literal["input", "output", "both"]


@runtime_checkable
class Redactor(Protocol):
    """Rewrites text instead of rejecting it (:class:`rxkit.pii.PIIDetector` with ``action="redact"``).

    ``hold``: how many trailing characters of a stream it needs to see before
    it can decide (what it looks for is never longer).
    """

    action: str
    hold: int

    def redact(self, text: str) -> str: ...


def guardrail(*checks: Any, direction: Direction = "output", bus: EventBus | None = None) -> Stage[Any, Any]:
    """Apply ``checks`` to the user's input (``Turn`` elements), the model's output (``TextDelta``), or both.

    ``checks`` are validators (:mod:`rxkit.validation`: ``BannedWords``,
    ``MaxLength``, ``Regex``, ``ValidJSON``, ``JSONSchema``, a predicate made
    with ``validator(fn, window=...)``, ``PIIDetector(action="block")``) and
    redactors (``PIIDetector(action="redact")``). On input a validator's
    rejection is ``InputValidationError`` and redactors rewrite the user's
    text before the model sees it. On output, redactors rewrite the stream
    (holding back a few characters so that a value split across tokens is
    caught, and redacting the final response too), and validators check each
    chunk: a rejection stops the stream mid-way, cancelling the provider call
    (``OutputValidationError``), as :func:`validate_output` does. With
    ``"both"`` the same stage does both to whatever passes it: put it before
    and after the ``llm`` stage.

    >>> from rxkit.pii import PIIDetector
    >>> from rxkit.validation import MaxLength
    >>> guard = guardrail(PIIDetector(), MaxLength(4000), direction="both")
    """
    if direction not in ("input", "output", "both"):
        raise ConfigError(f"guardrail direction must be 'input', 'output' or 'both', not {direction!r}")
    redactors = [c for c in checks if isinstance(c, Redactor) and c.action == "redact"]
    validators = as_validators([c for c in checks if not any(c is r for r in redactors)], "guardrail")
    parts: list[Any] = []
    if direction in ("input", "both"):
        if redactors:
            parts.append(ops.map(lambda item: _redact_turn(item, redactors)))
        if validators:
            parts.append(validate_input(*validators, bus=bus))
    if direction in ("output", "both"):
        if redactors:
            parts.append(_redact_stream(redactors))
        if validators:
            parts.append(validate_output(*validators, bus=bus))

    def operator(source: Observable[Any]) -> Observable[Any]:
        return source.pipe(*parts) if parts else source

    names = ", ".join(getattr(c, "name", type(c).__name__) for c in checks)
    return Stage(f"guardrail_{direction}", operator, StageKind.TRANSFORM, f"{direction} guardrail: {names}")


def _redact(text: str, redactors: list[Redactor]) -> str:
    for r in redactors:
        text = r.redact(text)
    return text


def _redact_turn(item: Any, redactors: list[Redactor]) -> Any:
    if isinstance(item, Turn):
        content = [
            p.model_copy(update={"text": _redact(p.text, redactors)}) if isinstance(p, TextPart) else p
            for p in item.user.content
        ]
        item.user = item.user.model_copy(update={"content": content})
    return item


def _redact_stream(redactors: list[Redactor]) -> Any:
    hold = max(r.hold for r in redactors)

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            pending = [""]

            def flush() -> None:
                if pending[0]:
                    observer.on_next(TextDelta(_redact(pending[0], redactors)))
                    pending[0] = ""

            def on_next(element: Any) -> None:
                if isinstance(element, TextDelta):
                    text = pending[0] + element.text
                    cut = len(text) - hold
                    if cut <= 0:
                        pending[0] = text
                        return
                    space = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))
                    cut = space + 1 if space >= 0 else cut  # do not cut inside a word
                    safe = _redact(text[:cut], redactors)
                    if _redact(text, redactors).startswith(safe):  # nothing found spans the cut
                        pending[0] = text[cut:]
                        if safe:
                            observer.on_next(TextDelta(safe))
                    else:
                        pending[0] = text
                    return
                if isinstance(element, EndOfTurn):
                    flush()
                    response = element.response
                    if response is not None and response.text:
                        message = response.message.model_copy(
                            update={
                                "content": [
                                    p.model_copy(update={"text": _redact(p.text, redactors)})
                                    if isinstance(p, TextPart)
                                    else p
                                    for p in response.message.content
                                ]
                            }
                        )
                        element = EndOfTurn(response.model_copy(update={"message": message}), element.turn)
                elif isinstance(element, Interrupt):
                    pending[0] = ""
                observer.on_next(element)

            def on_completed() -> None:
                flush()
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return operator
