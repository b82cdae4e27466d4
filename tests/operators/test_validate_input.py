"""validate_input: reject bad user input before the provider is called."""

from __future__ import annotations

import pytest

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt
from rxkit.errors import ConfigError, InputValidationError, StageError
from rxkit.operators import validate_input
from rxkit.telemetry.events import EventBus, ValidationFailedEvent, ValidationPassed
from rxkit.testing import run_virtual
from rxkit.turn import Turn
from rxkit.types import Message
from rxkit.validation import BannedWords, MaxLength, Validator, validator


def _turn(text: str) -> Turn:
    return Turn(Message.user(text))


def _summary(bus: EventBus) -> list[tuple[str, str, str]]:
    bus.flush()
    out = []
    for e in bus.events():
        if isinstance(e, ValidationPassed):
            out.append(("passed", e.validator, e.phase))
        elif isinstance(e, ValidationFailedEvent):
            out.append(("failed", e.validator, e.reason))
    return out


def test_good_input_passes_with_an_event_per_validator(bus: EventBus) -> None:
    a, b = _turn("hello"), _turn("how are you")
    stage = validate_input(BannedWords(["darn"]), MaxLength(20), bus=bus)
    run = run_virtual(stage, [(1.0, a), (2.0, b)], complete_at=3.0)
    assert run.values == [a, b] and run.times == [1.0, 2.0]
    assert run.completed_at == 3.0 and run.subscription == (0.0, 3.0)
    assert _summary(bus) == [("passed", "banned_words", "input"), ("passed", "max_length", "input")] * 2


def test_bad_input_ends_the_stream_with_a_typed_error(bus: EventBus) -> None:
    ok, bad, never = _turn("fine"), _turn("oh DARN it"), _turn("later")
    stage = validate_input(MaxLength(100), BannedWords(["darn"]), MaxLength(3, name="short"), bus=bus)
    run = run_virtual(stage, [(1.0, ok), (2.0, bad), (3.0, never)], complete_at=4.0)
    assert run.values == []  # "fine" is longer than 3 characters: the first turn already fails
    assert isinstance(run.error, InputValidationError)
    assert (run.error.validator, run.error.reason) == ("short", "longer than 3 characters")
    assert run.subscription == (0.0, 1.0)

    bus.clear()
    stage = validate_input(MaxLength(100), BannedWords(["darn"]), bus=bus)
    run = run_virtual(stage, [(1.0, ok), (2.0, bad), (3.0, never)], complete_at=4.0)
    assert run.values == [ok]
    assert isinstance(run.error, InputValidationError)
    assert run.error.validator == "banned_words"
    assert run.error.reason == "contains the banned word 'DARN'"
    assert "banned_words" in str(run.error)
    assert run.subscription == (0.0, 2.0)  # upstream released at the failing turn: nothing leaks
    assert _summary(bus)[-2:] == [
        ("passed", "max_length", "input"),
        ("failed", "banned_words", "contains the banned word 'DARN'"),
    ]


def test_later_validators_do_not_run_after_a_rejection() -> None:
    calls: list[str] = []

    def record(text: str) -> bool:
        calls.append(text)
        return True

    run = run_virtual(validate_input(MaxLength(1), validator(record)), [_turn("long")])
    assert isinstance(run.error, InputValidationError) and calls == []


def test_a_validator_that_raises_becomes_a_stage_error() -> None:
    class Broken(Validator):
        name = "broken"

        def check_final(self, text: str) -> str | None:
            raise RuntimeError("boom")

    run = run_virtual(validate_input(Broken()), [(1.0, _turn("x"))])
    assert isinstance(run.error, StageError)
    assert getattr(run.error, "validator", None) == "broken" and "boom" in str(run.error)
    assert isinstance(run.error.__cause__, RuntimeError)
    assert run.subscription == (0.0, 1.0)


def test_controls_pass_through(bus: EventBus) -> None:
    items = [EndOfTurn(), Interrupt(), EndOfStream()]
    run = run_virtual(validate_input(MaxLength(0), bus=bus), items, complete_at=1.0)
    assert run.values == items and run.error is None
    assert _summary(bus) == []


def test_secrets_are_redacted_from_reason_and_event(bus: EventBus) -> None:
    key = "sk-abcdefghijklmnopqrstuvwx"
    run = run_virtual(validate_input(validator(lambda t: f"saw {t}", name="echo"), bus=bus), [_turn(key)])
    assert isinstance(run.error, InputValidationError)
    assert key not in str(run.error) and key not in run.error.reason
    assert all(key not in reason for *_, reason in _summary(bus))


def test_needs_validator_instances() -> None:
    with pytest.raises(ConfigError):
        validate_input(MaxLength)
