"""The llm stage: one turn after another, responses on the turn, cancellation, odd providers."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt, TextDelta, ToolCallElement
from rxkit.errors import BufferOverflowError, GraphError, ProviderError, RateLimitError, StreamError
from rxkit.operators import llm
from rxkit.providers.base import BaseProvider
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderCallStarted
from rxkit.testing import run_virtual
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message, ToolCall


def turn(text: str, history: list[Message] | None = None) -> Turn:
    t = Turn(Message.user(text), history=history)
    t.request = ChatRequest(messages=[*t.history, t.user])
    return t


def texts(values: list[Any]) -> list[str]:
    return [v.text for v in values if isinstance(v, TextDelta)]


def test_turns_run_one_after_another_on_virtual_time(bus: EventBus) -> None:
    mock = MockProvider(
        [MockResponse("a b", first_token_latency=1.0, chunk_latency=1.0), MockResponse("c", first_token_latency=1.0)],
        bus=bus,
    )
    t1, t2 = turn("one"), turn("two")
    run = run_virtual(llm(mock), [(0.0, t1), (0.5, t2)], complete_at=0.6)
    assert texts(run.values) == ["a ", "b", "c"]
    assert run.times == [1.0, 2.0, 2.0, 3.0, 3.0]  # the second request goes out when the first answer ended
    ends = [v for v in run.values if isinstance(v, EndOfTurn)]
    assert [e.turn for e in ends] == [t1, t2]
    assert t1.response is not None and t1.response.text == "a b" and ends[0].response is t1.response
    assert t2.response is not None and t2.response.text == "c"
    assert [r.messages[-1].text for r in mock.requests] == ["one", "two"]
    assert run.completed_at == 3.0 and run.subscription == (0.0, 0.6)  # the input ended at 0.6
    assert len(bus.events(ProviderCallStarted)) == 2


def test_tool_calls_pass_through() -> None:
    call = ToolCall(id="1", name="now")
    run = run_virtual(llm(MockProvider([MockResponse("", tool_calls=[call])])), [turn("time?")], complete_at=1)
    assert run.values[0] == ToolCallElement(call)
    assert run.values[1].turn.response.message.tool_calls == [call]


def test_a_turn_without_request_sends_history_and_user() -> None:
    mock = MockProvider(["ok"])
    history = [Message.user("before"), Message.assistant("sure")]
    run_virtual(llm(mock), [Turn(Message.user("now"), history=history)], complete_at=1)
    assert [m.text for m in mock.requests[0].messages] == ["before", "sure", "now"]


def test_control_elements_keep_their_place() -> None:
    mock = MockProvider([MockResponse("x y", chunk_latency=1.0)])
    run = run_virtual(llm(mock), [(0.0, turn("q")), (0.1, EndOfStream())], complete_at=0.2)
    assert [type(v).__name__ for v in run.values] == ["TextDelta", "TextDelta", "EndOfTurn", "EndOfStream"]
    assert run.times[-1] == 1.0


def test_dispose_mid_stream_cancels_the_provider(bus: EventBus) -> None:
    mock = MockProvider([MockResponse("a b c d", chunk_latency=1.0)], bus=bus)
    t = turn("q")
    run = run_virtual(llm(mock), [t], dispose_at=1.5)
    assert texts(run.values) == ["a ", "b "]
    assert run.subscription == (0.0, 1.5)
    assert t.response is None
    assert not bus.events(ProviderCallCompleted)  # the call never finished: it was cancelled


def test_interrupt_cancels_the_turn_in_flight_and_the_next_one_runs() -> None:
    mock = MockProvider([MockResponse("a b c", chunk_latency=1.0), "next"])
    t1, t2 = turn("one"), turn("two")
    run = run_virtual(llm(mock), [(0.0, t1), (0.2, t2), (1.5, Interrupt("user"))], complete_at=2)
    assert [type(v).__name__ for v in run.values] == ["TextDelta", "TextDelta", "Interrupt", "TextDelta", "EndOfTurn"]
    assert run.times[2] == 1.5  # the interrupt passes at once, ahead of the waiting turn
    assert t1.response is None and t2.response is not None and t2.response.text == "next"
    assert run.completed_at == 2


def test_provider_error_ends_the_stream() -> None:
    limited = RateLimitError("429", provider="mock")
    run = run_virtual(llm(MockProvider([MockResponse("a b", error_at_chunk=1, error=limited)])), [turn("q")])
    assert texts(run.values) == ["a "] and run.error is limited
    assert run.subscription[1] == 0.0  # the input was let go


class _Odd(BaseProvider):
    type = "odd"

    def __init__(self, stream: Any) -> None:
        super().__init__("odd-model")
        self._stream = stream

    def stream(self, request: ChatRequest) -> Observable[Any]:
        if isinstance(self._stream, Exception):
            raise self._stream
        return self._stream


def test_a_stream_without_end_of_turn_is_a_stream_error() -> None:
    run = run_virtual(llm(_Odd(reactivex.of(TextDelta("par"), TextDelta("tial")))), [turn("q")], complete_at=1)
    assert isinstance(run.error, StreamError) and run.error.partial == "partial"


def test_an_end_of_turn_without_response_gets_one_from_the_deltas() -> None:
    call = ToolCall(id="1", name="f")
    provider = _Odd(reactivex.of(TextDelta("he"), TextDelta("llo"), ToolCallElement(call), EndOfTurn()))
    t = turn("q")
    run = run_virtual(llm(provider), [t], complete_at=1)
    assert t.response is not None and t.response.text == "hello" and t.response.message.tool_calls == [call]
    assert t.response.provider == "odd" and run.values[-1].response is t.response


def test_a_provider_that_raises_becomes_a_provider_error() -> None:
    run = run_virtual(llm(_Odd(RuntimeError("no socket"))), [turn("q")], complete_at=1)
    assert isinstance(run.error, ProviderError) and "no socket" in str(run.error)


def test_a_string_instead_of_a_turn_is_a_graph_error() -> None:
    run = run_virtual(llm(MockProvider()), ["raw text"], complete_at=1)
    assert isinstance(run.error, GraphError) and "load_state" in str(run.error)


def test_waiting_turns_are_bounded() -> None:
    mock = MockProvider([MockResponse("slow", first_token_latency=5.0)])
    run = run_virtual(llm(mock, max_pending=2), [turn(str(i)) for i in range(4)], complete_at=1)
    assert isinstance(run.error, BufferOverflowError)
    assert run.subscription[1] == 0.0


def test_thousands_of_synchronous_turns_do_not_recurse() -> None:
    mock = MockProvider()
    run = run_virtual(llm(mock), [turn(str(i)) for i in range(3000)], complete_at=1)
    assert run.error is None and len(texts(run.values)) == 3000
    assert texts(run.values)[-1] == "2999"


def test_stage_metadata() -> None:
    stage = llm(MockProvider())
    assert stage.name == "llm" and stage.kind.value == "transform"
    with pytest.raises(TypeError):
        llm()  # type: ignore[call-arg]


def test_dispose_from_inside_a_synchronous_drain_starts_nothing_more() -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a", first_token_latency=1.0), "b", "c"])
    inputs: Subject[Any] = Subject()
    out: list[Any] = []

    def on_next(v: Any) -> None:
        out.append(v)
        if isinstance(v, EndOfTurn) and v.turn is t2:
            subscription.dispose()  # while the queued turns are being started one after another

    t2 = turn("2")
    subscription = inputs.pipe(llm(mock)).subscribe(on_next, scheduler=sch)
    for t in (turn("1"), t2, turn("3")):
        inputs.on_next(t)
    sch.advance_to(5.0)
    assert texts(out) == ["a", "b"]
    assert len(mock.requests) == 2 and mock.remaining == 1
