"""The ``validate_input`` stage: check the user's message before the provider is called."""

from __future__ import annotations

from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from rxkit.errors import InputValidationError, StageError, redact
from rxkit.graph.stage import Stage, StageKind
from rxkit.telemetry.events import EventBus, ValidationFailedEvent, ValidationPassed, default_bus
from rxkit.turn import Turn
from rxkit.validation import Validator, as_validators

__all__ = ["validate_input"]


def validate_input(*validators: Validator, bus: EventBus | None = None) -> Stage[Turn, Turn]:
    """Run each validator's final check on ``turn.user``'s text.

    A rejection ends the stream with ``on_error(InputValidationError)``
    (``validator`` and ``reason`` set) and publishes a
    :class:`~rxkit.telemetry.events.ValidationFailedEvent`; each pass publishes a
    :class:`~rxkit.telemetry.events.ValidationPassed`. Other elements pass through.

    >>> from rxkit.validation import MaxLength
    >>> stage = validate_input(MaxLength(2000))
    """
    checks = as_validators(validators, "validate_input")
    events = bus if bus is not None else default_bus

    def check(item: Any) -> Any:
        if not isinstance(item, Turn):
            return item
        text = item.user.text
        for v in checks:
            try:
                reason = v.check_final(text)
            except Exception as exc:  # a validator that raises is a stage failure
                raise StageError(
                    f"validator {v.name!r} raised {type(exc).__name__}: {exc}", stage="validate_input", validator=v.name
                ) from exc
            if reason is not None:
                reason = redact(reason)
                events.publish(ValidationFailedEvent(validator=v.name, phase="input", reason=reason))
                raise InputValidationError(
                    f"input rejected by {v.name!r}: {reason}", validator=v.name, reason=reason, phase="input"
                )
            events.publish(ValidationPassed(validator=v.name, phase="input"))
        return item

    def operator(source: Observable[Any]) -> Observable[Any]:
        return source.pipe(ops.map(check))  # map sends what `check` raises to on_error

    return Stage("validate_input", operator, StageKind.TRANSFORM, "check the user's input")
