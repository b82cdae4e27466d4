"""assemble_prompt: a Turn in, the same Turn out with its request built."""

from __future__ import annotations

import pytest

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt
from rxkit.errors import ConfigError, StageError, TemplateError
from rxkit.graph import Graph
from rxkit.operators import assemble_prompt, validate_input
from rxkit.prompts import PromptSpec, approx_tokens
from rxkit.telemetry.events import EventBus, PromptAssembled
from rxkit.testing import run_virtual
from rxkit.turn import Turn
from rxkit.types import Message, ToolCall, ToolDescriptor
from rxkit.validation import MaxLength


def _turn(text: str = "hi", **kwargs: object) -> Turn:
    return Turn(Message.user(text), **kwargs)  # type: ignore[arg-type]


def test_builds_system_history_user_with_tools_and_params(bus: EventBus) -> None:
    spec = PromptSpec(name="helper", system="You are {{ persona }}.", variables={"persona": "kind"}, temperature=0.1)
    tools = [ToolDescriptor(name="clock", description="the time")]
    history = [Message.user("earlier"), Message.assistant("reply")]
    turn = _turn("now", history=history, session="s1")
    run = run_virtual(assemble_prompt(spec, tools=tools, bus=bus), [(1.0, turn)], complete_at=2.0)
    assert run.values == [turn] and run.values[0] is turn
    assert run.times == [1.0]
    assert run.completed_at == 2.0 and run.subscription == (0.0, 2.0)
    request = turn.request
    assert request is not None
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user"]
    assert request.messages[0].text == "You are kind."
    assert request.messages[1:] == [*history, turn.user]
    assert request.tools == tools
    assert request.temperature == 0.1 and request.max_tokens is None
    bus.flush()
    assert bus.events(PromptAssembled) == [
        PromptAssembled(prompt="helper", session="s1", messages=4, dropped=0, time=bus.events()[0].time)
    ]


def test_a_string_prompt_is_a_template_and_none_means_no_system_message() -> None:
    turn = _turn("q")
    run_virtual(assemble_prompt("Be {{ tone }}.", variables={"tone": "brief"}), [turn])
    assert turn.request is not None and turn.request.messages[0] == Message.system("Be brief.")
    bare = _turn("q")
    run_virtual(assemble_prompt(), [bare])
    assert bare.request is not None and bare.request.messages == [bare.user]


def test_variable_precedence_spec_then_stage_then_turn() -> None:
    spec = PromptSpec(name="p", system="{{ a }} {{ b }} {{ c }}", variables={"a": "spec", "b": "spec", "c": "spec"})
    stage = assemble_prompt(spec, variables={"b": "stage", "c": "stage"})
    turn = _turn(variables={"c": "turn"})
    run_virtual(stage, [turn])
    assert turn.request is not None and turn.request.messages[0].text == "spec stage turn"


def test_undefined_variable_is_a_template_error_at_that_turn() -> None:
    stage = assemble_prompt(PromptSpec(name="greeter", system="Hello {{ name }}"))
    ok, bad, later = _turn(variables={"name": "Ada"}), _turn(), _turn(variables={"name": "Bo"})
    run = run_virtual(stage, [(1.0, ok), (2.0, bad), (3.0, later)], complete_at=4.0)
    assert run.values == [ok] and run.times == [1.0]
    assert isinstance(run.error, TemplateError)
    assert run.error.variable == "name" and run.error.template == "greeter"
    assert "'name'" in str(run.error) and "'greeter'" in str(run.error)
    assert run.subscription == (0.0, 2.0)  # the upstream subscription ended with the failing turn
    assert later.request is None


def test_template_syntax_error_raises_when_the_stage_is_built() -> None:
    with pytest.raises(TemplateError) as info:
        assemble_prompt("oops {% endif %}")
    assert info.value.line == 1


def test_history_is_truncated_to_the_budget(bus: EventBus) -> None:
    history = [
        Message.user("old question " * 20),
        Message.assistant(tool_calls=[ToolCall(id="c", name="t")]),
        Message.tool("c", "a long result " * 20),
        Message.user("recent"),
        Message.assistant("recent answer"),
    ]
    budget = sum(approx_tokens(m) for m in history[3:])
    turn = _turn("now", history=history)
    run_virtual(assemble_prompt(max_history_tokens=budget, bus=bus), [turn])
    assert turn.request is not None and turn.request.messages == [*history[3:], turn.user]
    assert turn.history == history  # the turn's own history is untouched; only the request is cut
    bus.flush()
    (event,) = bus.events(PromptAssembled)
    assert isinstance(event, PromptAssembled) and (event.messages, event.dropped) == (3, 3)


def test_argument_budget_overrides_the_spec() -> None:
    spec = PromptSpec(name="p", max_history_tokens=0)
    history = [Message.user("a"), Message.assistant("b")]
    cut, kept = _turn(history=history), _turn(history=history)
    run_virtual(assemble_prompt(spec), [cut])
    run_virtual(assemble_prompt(spec, max_history_tokens=1000), [kept])
    assert cut.request is not None and cut.request.messages == [cut.user]
    assert kept.request is not None and kept.request.messages == [*history, kept.user]


def test_custom_token_counter() -> None:
    history = [Message.user("a"), Message.assistant("b"), Message.user("c")]
    turn = _turn(history=history)
    run_virtual(assemble_prompt(max_history_tokens=2, count_tokens=lambda m: 1), [turn])
    assert turn.request is not None and turn.request.messages == [*history[1:], turn.user]


def test_a_counter_that_raises_becomes_a_stage_error() -> None:
    def broken(message: Message) -> int:
        raise ValueError("no tokenizer")

    run = run_virtual(assemble_prompt(max_history_tokens=5, count_tokens=broken), [(1.0, _turn(history=[]))])
    assert run.values and run.error is None  # empty history: the counter is never called
    run = run_virtual(assemble_prompt(max_history_tokens=5, count_tokens=broken), [(1.0, _turn(history=[_m()]))])
    assert isinstance(run.error, StageError) and "no tokenizer" in str(run.error)
    assert run.subscription == (0.0, 1.0)


def _m() -> Message:
    return Message.user("x")


def test_controls_and_other_elements_pass_through_untouched() -> None:
    items = [EndOfTurn(), Interrupt("barge-in"), "not a turn", EndOfStream()]
    run = run_virtual(assemble_prompt("sys"), [(0.5, x) for x in items], complete_at=1.0)
    assert run.values == items and all(a is b for a, b in zip(run.values, items, strict=True))
    assert run.times == [0.5] * 4


def test_rejects_a_prompt_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match="PromptSpec or a template text"):
        assemble_prompt(42)


def test_in_a_real_graph_on_the_event_loop(bus: EventBus) -> None:
    graph = Graph.chain(validate_input(MaxLength(100), bus=bus), assemble_prompt("Be {{ tone }}.", bus=bus), bus=bus)
    turn = _turn("hello", variables={"tone": "brief"})
    assert graph.run([turn], timeout=10) == [turn]
    assert turn.request is not None and [m.text for m in turn.request.messages] == ["Be brief.", "hello"]
