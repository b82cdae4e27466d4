"""validate_output: streaming checks that abort mid-stream, whole-text checks at the end of a turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt, TextDelta, ToolCallElement
from rxkit.errors import OutputValidationError, StageError
from rxkit.graph import Graph
from rxkit.operators import validate_output
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus, ValidationFailedEvent, ValidationPassed
from rxkit.testing import ano_leaks, run_virtual
from rxkit.types import ChatResponse, Message, ToolCall
from rxkit.validation import (
    BannedWords,
    JSONSchema,
    MaxLength,
    Regex,
    RunningText,
    Validator,
    ValidJSON,
)


def _deltas(*texts: str, start: float = 1.0, step: float = 1.0) -> list[tuple[float, TextDelta]]:
    return [(start + i * step, TextDelta(t)) for i, t in enumerate(texts)]


def _summary(bus: EventBus) -> list[tuple[str, str]]:
    bus.flush()
    out: list[tuple[str, str]] = []
    for e in bus.events():
        if isinstance(e, ValidationPassed):
            out.append(("passed", e.validator))
        elif isinstance(e, ValidationFailedEvent):
            out.append(("failed", e.validator))
    return out


def test_clean_output_passes_through_unchanged(bus: EventBus) -> None:
    events = [*_deltas("Hello", " there", "!"), (4.0, EndOfTurn())]
    stage = validate_output(BannedWords(["darn"]), MaxLength(100), bus=bus)
    run = run_virtual(stage, events, complete_at=5.0)
    assert run.timeline() == events
    assert run.completed_at == 5.0 and run.subscription == (0.0, 5.0)
    assert _summary(bus) == [("passed", "banned_words"), ("passed", "max_length")]


def test_banned_word_split_across_deltas_aborts_at_the_confirming_delta(bus: EventBus) -> None:
    events = [*_deltas("Well d", "ar", "n", " it", " all"), (6.0, EndOfTurn())]
    run = run_virtual(validate_output(BannedWords(["darn"]), bus=bus), events, complete_at=7.0)
    assert run.values == [TextDelta("Well d"), TextDelta("ar"), TextDelta("n")]
    assert run.times == [1.0, 2.0, 3.0]
    assert isinstance(run.error, OutputValidationError)
    assert run.error.validator == "banned_words" and run.error.reason == "contains the banned word 'darn'"
    assert run.error.partial == "Well darn it"
    assert run.subscription == (0.0, 4.0)  # upstream (the provider request) disposed at the offending delta
    assert _summary(bus) == [("failed", "banned_words")]


def test_max_length_aborts_mid_stream() -> None:
    run = run_virtual(validate_output(MaxLength(8)), [*_deltas("1234", "5678", "9", "0")], complete_at=9.0)
    assert [d.text for d in run.values] == ["1234", "5678"]
    assert isinstance(run.error, OutputValidationError) and run.error.partial == "123456789"
    assert run.subscription == (0.0, 3.0)


def test_forbidden_pattern_aborts_at_once() -> None:
    stage = validate_output(Regex(must_not_match=r"api[_ ]key: \w+"))
    run = run_virtual(stage, [*_deltas("the api", "_key: ab", "cd", " more")], complete_at=9.0)
    assert [d.text for d in run.values] == ["the api"]
    assert isinstance(run.error, OutputValidationError) and run.error.validator == "regex"
    assert run.subscription == (0.0, 2.0)


def test_json_checks_run_at_end_of_turn_before_it_is_passed_on(bus: EventBus) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    good = [*_deltas('{"n"', ": 1}"), (3.0, EndOfTurn())]
    run = run_virtual(validate_output(ValidJSON(), JSONSchema(schema), bus=bus), good, complete_at=4.0)
    assert run.timeline() == good and run.completed_at == 4.0
    assert _summary(bus) == [("passed", "valid_json"), ("passed", "json_schema")]

    bus.clear()
    bad = [*_deltas('{"n"', ': "one"}'), (3.0, EndOfTurn()), (3.5, TextDelta("next turn"))]
    run = run_virtual(validate_output(ValidJSON(), JSONSchema(schema), bus=bus), bad, complete_at=4.0)
    assert run.values == [TextDelta('{"n"'), TextDelta(': "one"}')]  # the deltas, but no EndOfTurn
    assert isinstance(run.error, OutputValidationError)
    assert run.error.validator == "json_schema" and run.error.partial == '{"n": "one"}'
    assert "$.n" in run.error.reason
    assert run.subscription == (0.0, 3.0)
    assert _summary(bus) == [("passed", "valid_json"), ("failed", "json_schema")]


def test_required_pattern_is_checked_at_end_of_turn() -> None:
    stage = validate_output(Regex(must_match=r"\bDONE\b"))
    run = run_virtual(stage, [*_deltas("all ", "good"), (3.0, EndOfTurn())])
    assert isinstance(run.error, OutputValidationError) and len(run.values) == 2
    ok = run_virtual(stage, [*_deltas("all ", "DONE"), (3.0, EndOfTurn())], complete_at=4.0)
    assert ok.error is None and len(ok.values) == 3


def test_each_turn_is_checked_on_its_own_text() -> None:
    events = [*_deltas('{"a":', " 1}"), (3.0, EndOfTurn()), *_deltas("[1,", " 2]", start=4.0), (6.0, EndOfTurn())]
    run = run_virtual(validate_output(ValidJSON(), MaxLength(10)), events, complete_at=7.0)
    assert run.error is None and run.timeline() == events


def test_interrupt_discards_the_interrupted_text() -> None:
    events = [*_deltas("[1, 2", " 3"), (3.0, Interrupt("barge-in")), *_deltas("[4]", start=4.0), (5.0, EndOfTurn())]
    run = run_virtual(validate_output(ValidJSON(), MaxLength(8)), events, complete_at=6.0)  # 7, then 3
    assert run.error is None and run.timeline() == events


def test_final_checks_run_at_completion_when_no_end_of_turn_came() -> None:
    run = run_virtual(validate_output(ValidJSON()), _deltas("{oops"), complete_at=3.0)
    assert isinstance(run.error, OutputValidationError) and run.completed_at is None
    assert run.subscription == (0.0, 3.0)
    run = run_virtual(validate_output(ValidJSON()), _deltas("{}"), complete_at=3.0)
    assert run.error is None and run.completed_at == 3.0
    run = run_virtual(validate_output(ValidJSON()), [], complete_at=3.0)  # no text at all: nothing to check
    assert run.error is None and run.completed_at == 3.0


def test_end_of_turn_without_deltas_checks_the_response_text() -> None:
    response = ChatResponse(message=Message.assistant("not json"))
    run = run_virtual(validate_output(ValidJSON()), [(1.0, EndOfTurn(response=response))])
    assert isinstance(run.error, OutputValidationError) and run.error.partial == "not json"


def test_other_elements_and_controls_pass_through() -> None:
    call = ToolCallElement(ToolCall(id="1", name="clock"))
    events = [(1.0, call), (2.0, EndOfStream()), (3.0, "anything")]
    run = run_virtual(validate_output(BannedWords(["x"]), ValidJSON()), events, complete_at=4.0)
    assert run.timeline() == events and run.completed_at == 4.0


def test_upstream_error_passes_through() -> None:
    boom = RuntimeError("provider broke")
    run = run_virtual(validate_output(MaxLength(100)), _deltas("a"), error_at=(2.0, boom))
    assert run.values == [TextDelta("a")] and run.error is boom


def test_dispose_releases_upstream() -> None:
    run = run_virtual(validate_output(MaxLength(100)), _deltas("a", "b", "c"), dispose_at=2.5)
    assert len(run.values) == 2 and run.subscription == (0.0, 2.5)


def test_a_chunk_check_that_raises_becomes_a_stage_error() -> None:
    class Broken(Validator):
        name = "broken"

        def check_chunk(self, delta: str, text: RunningText) -> str | None:
            raise KeyError(delta)

    run = run_virtual(validate_output(Broken()), _deltas("a", "b"))
    assert run.values == [] and isinstance(run.error, StageError)
    assert getattr(run.error, "validator", None) == "broken" and run.subscription == (0.0, 1.0)


def test_per_delta_checks_never_rebuild_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    joins: list[int] = []
    original = RunningText.__str__

    def counting(self: RunningText) -> str:
        joins.append(len(self))
        return original(self)

    monkeypatch.setattr(RunningText, "__str__", counting)
    stage = validate_output(BannedWords(["darn", "heck"]), MaxLength(1_000_000), Regex(must_not_match="secret"))
    events = [(0.001 * i, TextDelta("word ")) for i in range(5000)] + [(10.0, EndOfTurn())]
    run = run_virtual(stage, events, complete_at=11.0)
    assert run.error is None and len(run.values) == 5001
    assert joins == [25_000]  # once, at the end of the turn


async def test_abort_cancels_a_real_async_provider_stream() -> None:
    cancelled = asyncio.Event()
    never = asyncio.Event()

    async def provider() -> AsyncIterator[TextDelta]:
        try:
            for piece in ["Sure, ", "the darn ", "thing"]:
                yield TextDelta(piece)
                await asyncio.sleep(0)
            await never.wait()  # a provider that would go on forever
        finally:
            cancelled.set()

    async with ano_leaks():
        graph = Graph.chain(validate_output(BannedWords(["darn"]), bus=EventBus()), bus=EventBus())
        seen: list[str] = []
        with pytest.raises(OutputValidationError) as info:
            async for element in graph.astream(from_async_iterable(provider)):
                seen.append(element.text)
        await asyncio.wait_for(cancelled.wait(), 5)
    assert seen == ["Sure, "]
    assert info.value.partial == "Sure, the darn "
