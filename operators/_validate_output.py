"""The ``validate_output`` stage: check the model's answer as it streams and when it ends."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import Element, EndOfTurn, Interrupt, TextDelta
from rxkit.errors import OutputValidationError, StageError, redact
from rxkit.graph.stage import Stage, StageKind
from rxkit.operators._turn_check import TurnCheck
from rxkit.telemetry.events import EventBus, ValidationFailedEvent, ValidationPassed, default_bus
from rxkit.validation import RunningText, Validator, as_validators

__all__ = ["validate_output"]


def validate_output(*validators: Validator, bus: EventBus | None = None) -> Stage[Element, Element]:
    """Pass elements through while checking the streamed text.

    Each :class:`~rxkit.elements.TextDelta` goes through the validators'
    streaming checks (cheap, incremental: banned words, length, forbidden
    patterns); the first rejection disposes the upstream subscription at once
    (cancelling the provider request) and ends the stream with
    ``on_error(OutputValidationError)``, whose ``partial`` is the text received
    so far, offending delta included. Whole-text checks (valid JSON, a schema,
    a required pattern) run at :class:`~rxkit.elements.EndOfTurn`, before it is
    passed on (or at completion if the last turn had no EndOfTurn). Publishes
    :class:`~rxkit.telemetry.events.ValidationPassed` per validator per turn, or
    :class:`~rxkit.telemetry.events.ValidationFailedEvent`. An
    :class:`~rxkit.elements.Interrupt` discards the turn's text.

    >>> from rxkit.validation import BannedWords, ValidJSON
    >>> stage = validate_output(BannedWords(["darn"]), ValidJSON())
    """
    checks = as_validators(validators, "validate_output")
    streaming = tuple((v, v.check_chunk) for v in checks if v.streaming)
    events = bus if bus is not None else default_bus

    def operator(source: Observable[Element]) -> Observable[Element]:
        def subscribe(observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None) -> Any:
            text = RunningText()
            check = TurnCheck(observer)  # check.open: text arrived since the last end of turn
            fail = check.fail  # disposes upstream first, so the provider request is cancelled before anyone reacts

            def reject(v: Validator, reason: str, partial: str) -> None:
                reason = redact(reason)
                events.publish(ValidationFailedEvent(validator=v.name, phase="output", reason=reason))
                fail(
                    OutputValidationError(
                        f"output rejected by {v.name!r}: {reason}",
                        validator=v.name,
                        reason=reason,
                        partial=partial,
                        phase="output",
                    )
                )

            def raised(v: Validator, exc: Exception) -> None:
                message = f"validator {v.name!r} raised {type(exc).__name__}: {exc}"
                error = StageError(message, stage="validate_output", validator=v.name)
                error.__cause__ = exc
                fail(error)

            def finish(final: str | None) -> bool:
                # The answer that is kept: the final response's text when there is one (with tool rounds,
                # the streamed text also holds what the model said in the earlier rounds).
                whole = final if final is not None else str(text)
                text.clear()
                check.open = False
                for v in checks:
                    try:
                        reason = v.check_final(whole)
                    except Exception as exc:  # noqa: BLE001 - becomes on_error
                        raised(v, exc)
                        return False
                    if reason is not None:
                        reject(v, reason, whole)
                        return False
                    events.publish(ValidationPassed(validator=v.name, phase="output"))
                return True

            def on_next(element: Element) -> None:
                if check.stopped:
                    return
                if isinstance(element, TextDelta):
                    delta = element.text
                    text.append(delta)
                    check.open = True
                    for v, check_chunk in streaming:
                        try:
                            reason = check_chunk(delta, text)
                        except Exception as exc:  # noqa: BLE001 - becomes on_error
                            raised(v, exc)
                            return
                        if reason is not None:
                            reject(v, reason, str(text))
                            return
                elif isinstance(element, EndOfTurn):
                    response = element.response
                    if not finish(response.text if response is not None else None):
                        return
                elif isinstance(element, Interrupt):
                    text.clear()
                    check.open = False
                observer.on_next(element)

            return check.subscribe(source, on_next, lambda: finish(None), scheduler)

        return reactivex.create(subscribe)

    return Stage("validate_output", operator, StageKind.TRANSFORM, "check the model's output")
