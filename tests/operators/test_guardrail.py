"""guardrail: validators and redactors on input, output or both, on virtual time; the PII detector."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import ConfigError, InputValidationError, OutputValidationError
from rxkit.operators import guardrail
from rxkit.pii import PIIDetector, luhn_valid
from rxkit.testing import run_virtual
from rxkit.turn import Turn
from rxkit.types import ChatResponse, Message
from rxkit.validation import BannedWords, MaxLength, validator

CARD = "4111 1111 1111 1111"  # a test Visa number: passes Luhn


def deltas(text: str, step: int = 3, start: float = 0.1) -> list[tuple[float, TextDelta]]:
    return [(round(start + 0.1 * n, 3), TextDelta(text[i : i + step])) for n, i in enumerate(range(0, len(text), step))]


def streamed_text(result: object) -> str:
    return "".join(e.text for _, e in result.timeline() if isinstance(e, TextDelta))  # type: ignore[attr-defined]


def test_output_redaction_catches_values_split_across_tokens_and_redacts_the_final_response() -> None:
    answer = f"Write to ada.lovelace@example.com, call +1 415 555 0100 or pay with {CARD} today. Thanks!"
    response = ChatResponse(message=Message.assistant(answer))
    events = [*deltas(answer), (20.0, EndOfTurn(response))]
    result = run_virtual(guardrail(PIIDetector()), events, complete_at=30.0)
    expected = "Write to [EMAIL], call [PHONE] or pay with [CARD] today. Thanks!"
    assert streamed_text(result) == expected
    end = result.timeline()[-1][1]
    assert isinstance(end, EndOfTurn) and end.response.text == expected  # type: ignore[union-attr]
    first_text_at = next(t for t, e in result.timeline() if isinstance(e, TextDelta))
    assert first_text_at < 20.0  # it streams (holding back a little), it does not wait for the end
    assert result.subscription == (0.0, 30.0)


def test_output_block_stops_the_stream_mid_way() -> None:
    answer = "Sure. My number is +44 20 7946 0958 and then a lot more text that must never be sent."
    result = run_virtual(guardrail(PIIDetector(action="block")), deltas(answer), complete_at=50.0)
    assert isinstance(result.error, OutputValidationError)
    assert result.error.reason == "contains personal data (phone)"
    stopped = result.subscription[1]
    assert stopped is not None and stopped < 2.0  # disposed mid-answer: the provider call is cancelled
    assert "never" not in streamed_text(result)


def test_predicate_guardrail_with_a_window_stops_mid_way_and_validators_keep_working() -> None:
    no_ssn = validator(lambda text: "SSN" not in text, name="no_ssn", window=16)
    answer = "Here is what you asked: the SSN is ... and more."
    result = run_virtual(guardrail(no_ssn, MaxLength(1000)), deltas(answer), complete_at=50.0)
    assert isinstance(result.error, OutputValidationError) and result.error.validator == "no_ssn"
    assert result.subscription[1] is not None and result.subscription[1] < 2.0


def test_input_redaction_and_blocking() -> None:
    turn = Turn(Message.user(f"my card is {CARD}, email bob@example.org"))
    result = run_virtual(guardrail(PIIDetector(), direction="input"), [(0.1, turn)], complete_at=1.0)
    assert result.timeline()[0][1].user.text == "my card is [CARD], email [EMAIL]"
    blocked = run_virtual(
        guardrail(BannedWords(["darn"]), direction="input"), [(0.1, Turn(Message.user("darn it")))], complete_at=1.0
    )
    assert isinstance(blocked.error, InputValidationError)


def test_both_directions_in_one_stage_and_interrupt_drops_held_text() -> None:
    guard = guardrail(PIIDetector(), direction="both")
    events = [
        (0.1, Turn(Message.user("reach me at x@y.io"))),
        (0.2, TextDelta("partial ada@exa")),
        (0.3, Interrupt()),
        (0.4, TextDelta("ok")),
        (0.5, EndOfTurn()),
    ]
    result = run_virtual(guard, events, complete_at=1.0)
    out = [e for _, e in result.timeline()]
    assert out[0].user.text == "reach me at [EMAIL]"
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["ok"]  # the interrupted text never went out


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="direction"):
        guardrail(MaxLength(3), direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="validator instances"):
        guardrail(MaxLength)
    with pytest.raises(ConfigError, match="action"):
        PIIDetector(action="shred")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kinds"):
        PIIDetector(kinds=["ssn"])


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("card 5555 5555 5555 4444 ok", ["card"]),
        ("card 5555-5555-5555-4444 ok", ["card"]),
        ("not a card 5555 5555 5555 4445", []),
        ("call (415) 555-0100 now", ["phone"]),
        ("year 2024 and 12 apples, 3.14159", []),
        ("a@b.co and c.d+e@f.example.org", ["email", "email"]),
    ],
)
def test_pii_kinds(text: str, kinds: list[str]) -> None:
    assert [f.kind for f in PIIDetector().find(text)] == kinds


def test_luhn() -> None:
    assert luhn_valid("79927398713") is False  # too short for a card
    assert luhn_valid("4012888888881881") and not luhn_valid("4012888888881882")


words = st.text(alphabet="abcdefghij klm.,", max_size=30)


@settings(max_examples=100, deadline=None)
@given(before=words, after=words, step=st.integers(1, 9))
def test_a_streamed_email_never_leaks_in_any_chunking(before: str, after: str, step: int) -> None:
    answer = f"{before} ada.lovelace@example.com {after}"
    result = run_virtual(guardrail(PIIDetector()), [*deltas(answer, step), (99.0, EndOfTurn())], complete_at=100.0)
    out = streamed_text(result)
    assert "lovelace" not in out and "example" not in out
    assert out == PIIDetector().redact(answer)
