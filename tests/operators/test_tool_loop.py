"""The tool loop on the scripted mock provider: rounds, parallelism, timeouts, errors, cancellation, approval."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rxkit.elements import EndOfTurn, ErrorElement, Interrupt, MessageElement, TextDelta, ToolCallElement
from rxkit.errors import ToolExecutionError
from rxkit.graph import Graph
from rxkit.operators import tool_loop
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.telemetry.events import EventBus, ToolCallCompleted, ToolCallFailed, ToolCallPending, ToolCallStarted
from rxkit.testing import ano_leaks
from rxkit.tools import tool
from rxkit.tools.approval import ApprovalGate
from rxkit.turn import Turn
from rxkit.types import ChatRequest, Message, ToolCall


def _turn(text: str = "hi") -> Turn:
    turn = Turn(Message.user(text))
    turn.request = ChatRequest(messages=[turn.user])
    return turn


def _calls(*pairs: tuple[str, str]) -> MockResponse:
    return MockResponse(tool_calls=[ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(pairs)])


def _tool_messages(request: ChatRequest) -> list[Message]:
    return [m for m in request.messages if m.role == "tool"]


async def _run(stage: Any, *inputs: Any) -> list[Any]:
    return await Graph.chain(stage).arun(list(inputs))


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_result_of_a_tool_reaches_the_next_round() -> None:
    mock = MockProvider(
        [
            MockResponse("Let me add. ", tool_calls=[ToolCall(id="c1", name="add", arguments='{"a": 2, "b": 3}')]),
            "It is 5.",
        ]
    )
    bus = EventBus()
    out = await _run(tool_loop(mock, [add], bus=bus), _turn("2+3?"))
    texts = [e.text for e in out if isinstance(e, TextDelta)]
    assert "".join(texts) == "Let me add. It is 5."
    assert [type(e).__name__ for e in out if not isinstance(e, TextDelta)] == [
        "ToolCallElement",
        "MessageElement",
        "EndOfTurn",
    ]
    second = mock.requests[1]
    assert second.tools and second.tools[0].name == "add"
    (result,) = _tool_messages(second)
    assert result.tool_results[0].content == "5" and not result.tool_results[0].is_error
    assistant = next(m for m in second.messages if m.role == "assistant")
    assert assistant.tool_calls[0].id == "c1"
    end = out[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None and end.response.text == "It is 5."
    assert end.turn is not None and [m.role for m in end.turn.messages_to_save()] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    bus.flush()
    assert [type(e).__name__ for e in bus.events(ToolCallStarted, ToolCallCompleted)] == [
        "ToolCallStarted",
        "ToolCallCompleted",
    ]


async def test_calls_of_one_round_run_in_parallel_up_to_the_limit() -> None:
    running = 0
    peak = 0
    both_started = asyncio.Event()

    @tool
    async def slow(n: int) -> int:
        """Wait a little."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running >= 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)  # deadlocks (times out) unless they overlap
        await asyncio.sleep(0.05)
        running -= 1
        return n

    args = [("slow", f'{{"n": {i}}}') for i in range(4)]
    mock = MockProvider([_calls(*args), "done"])
    out = await _run(tool_loop(mock, [slow], parallel=2), _turn())
    assert peak == 2
    results = _tool_messages(mock.requests[1])
    assert [m.tool_results[0].content for m in results] == ["0", "1", "2", "3"], "results keep the calls' order"
    assert not any(m.tool_results[0].is_error for m in results)
    assert isinstance(out[-1], EndOfTurn)


async def test_timeouts_unknown_tools_and_bad_arguments_go_back_to_the_model() -> None:
    @tool(timeout=0.2)
    async def hang() -> str:
        """Never answers."""
        await asyncio.sleep(60)
        return "never"

    mock = MockProvider([_calls(("hang", "{}"), ("nope", "{}"), ("add", '{"a": "x"}'), ("add", "{oops")), "sorry"])
    bus = EventBus()
    t0 = time.monotonic()
    out = await _run(tool_loop(mock, [hang, add], bus=bus), _turn())
    assert time.monotonic() - t0 < 30
    results = [m.tool_results[0] for m in _tool_messages(mock.requests[1])]
    assert all(r.is_error for r in results)
    assert "timed out" in results[0].content
    assert "no tool named 'nope'" in results[1].content and "available tools: add, hang" in results[1].content
    assert "is not of type 'integer'" in results[2].content
    assert "not valid JSON" in results[3].content
    assert isinstance(out[-1], EndOfTurn)
    bus.flush()
    assert len(bus.events(ToolCallFailed)) == 4


async def test_the_round_limit_holds() -> None:
    looping = [_calls(("add", '{"a": 1, "b": 1}')) for _ in range(10)]
    mock = MockProvider(looping)
    out = await _run(tool_loop(mock, [add], max_rounds=3), _turn())
    assert len(mock.requests) == 4, "three tool rounds, then the fourth answer ends the turn"
    errors = [e for e in out if isinstance(e, ErrorElement)]
    assert len(errors) == 1 and "after 3 rounds" in str(errors[0].error)
    assert isinstance(out[-1], EndOfTurn)


async def test_dispose_cancels_running_tools_and_nothing_of_the_round_is_acted_on() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @tool
    async def long_job() -> str:
        """Takes a minute."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "finished"

    mock = MockProvider([_calls(("long_job", "{}")), "should never be asked"])
    async with ano_leaks():
        seen: list[Any] = []
        sub = Graph.chain(tool_loop(mock, [long_job])).subscribe([_turn()], seen.append)
        await asyncio.wait_for(started.wait(), 5)
        sub.dispose()
        await asyncio.wait_for(cancelled.wait(), 5)
        await asyncio.sleep(0.05)
    assert len(mock.requests) == 1, "the model is not called again after a cancelled round"
    assert not any(isinstance(e, (MessageElement, EndOfTurn)) for e in seen)


async def test_an_interrupt_cancels_the_turn_and_passes_on() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @tool
    async def long_job() -> str:
        """Takes a minute."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "finished"

    mock = MockProvider([_calls(("long_job", "{}")), "never"])

    async def inputs() -> Any:
        yield _turn()
        await started.wait()
        yield Interrupt("user spoke")

    out = await Graph.chain(tool_loop(mock, [long_job])).arun(inputs())
    await asyncio.wait_for(cancelled.wait(), 5)  # the running tool was cancelled
    assert len(mock.requests) == 1
    assert [type(e).__name__ for e in out] == ["ToolCallElement", "Interrupt"]


async def test_approval_waits_for_the_application() -> None:
    @tool(requires_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    gate = ApprovalGate()
    bus = EventBus()
    bus.subscribe(
        lambda e: gate.approve(e.call_id) if "ok" in e.arguments else gate.deny(e.call_id, "not that one"),
        ToolCallPending,
    )
    mock = MockProvider([_calls(("delete_file", '{"path": "ok.txt"}'), ("delete_file", '{"path": "secret"}')), "done"])
    await _run(tool_loop(mock, [delete_file], approver=gate, bus=bus), _turn())
    a, b = (m.tool_results[0] for m in _tool_messages(mock.requests[1]))
    assert (a.content, a.is_error) == ("deleted ok.txt", False)
    assert b.is_error and "not that one" in b.content
    assert gate.pending == []


async def test_a_tool_needing_approval_without_an_approver_is_refused() -> None:
    @tool(requires_approval=True)
    def risky() -> str:
        """Risky."""
        return "done"

    mock = MockProvider([_calls(("risky", "{}")), "ok"])
    await _run(tool_loop(mock, [risky]), _turn())
    (result,) = _tool_messages(mock.requests[1])
    assert result.tool_results[0].is_error and "no approver" in result.tool_results[0].content


async def test_two_phase_keeps_the_tool_rounds_silent_then_streams_the_answer() -> None:
    mock = MockProvider(
        [
            MockResponse("thinking aloud", tool_calls=[ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')]),
            "ignored",
            "The sum is 3.",
        ]
    )
    out = await _run(tool_loop(mock, [add], two_phase=True), _turn())
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "The sum is 3."
    assert len(mock.requests) == 3
    assert mock.requests[2].tools == [], "the answer phase is asked without tools"
    assert any(isinstance(e, ToolCallElement) for e in out)


async def test_two_phase_without_tool_calls_answers_at_once() -> None:
    mock = MockProvider(["Just text."])
    out = await _run(tool_loop(mock, [add], two_phase=True), _turn())
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "Just text."
    assert len(mock.requests) == 1


async def test_turns_run_one_after_another() -> None:
    mock = MockProvider(["one", "two"])
    out = await _run(tool_loop(mock, [add]), _turn("a"), _turn("b"))
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["one", "two"]
    assert [r.messages[-1].text for r in mock.requests] == ["a", "b"]


async def test_a_forced_tool_choice_holds_for_the_first_round_only() -> None:
    mock = MockProvider([_calls(("add", '{"a": 1, "b": 2}')), "three"])
    turn = _turn()
    assert turn.request is not None
    turn.request = turn.request.model_copy(update={"tool_choice": "add"})
    await _run(tool_loop(mock, [add]), turn)
    assert [r.tool_choice for r in mock.requests] == ["add", "auto"]


async def test_a_round_cut_off_before_its_end_is_an_error_and_runs_no_tool_again() -> None:
    """A round whose stream completes without EndOfTurn used to reuse the previous round's answer:
    its tools ran again and its messages were saved twice."""
    import reactivex

    from rxkit.providers.base import Capabilities

    runs: list[int] = []

    @tool
    def count() -> int:
        """Count the calls."""
        runs.append(1)
        return len(runs)

    first = MockProvider([_calls(("count", "{}"))])

    class CutOff:
        name, model, capabilities = "cut", "cut", Capabilities(tools=True)
        calls = 0

        def stream(self, request: ChatRequest) -> Any:
            CutOff.calls += 1
            if CutOff.calls == 1:
                return first.stream(request)
            return reactivex.from_iterable([TextDelta("and then the connection")])  # no EndOfTurn

    turn = _turn()
    with pytest.raises(ToolExecutionError, match="without a response"):
        await _run(tool_loop(CutOff(), [count]), turn)
    assert runs == [1], "the first round's tool ran once, and only once"
    assert [m.role for m in turn.new_messages] == ["assistant", "tool"]


async def test_broken_tool_arguments_reach_the_model_and_the_next_request_is_still_valid() -> None:
    """Arguments cut off mid-JSON (max_tokens): the tool result says so, and the call goes back to Anthropic
    as an object (it takes nothing else), so the model gets to answer instead of the turn failing."""
    from rxkit.providers.anthropic import AnthropicProvider
    from tests.providers.anthropic_server import TEXT_STREAM, TEXT_STREAM_TEXT, AnthropicServer, Reply, tool_stream

    async with AnthropicServer() as server:
        server.push(Reply(events=tool_stream("", [("toolu_1", "add", '{"a": 1, "b"')])), Reply(events=TEXT_STREAM))
        provider = AnthropicProvider(api_key=server.api_key, base_url=server.url, bus=EventBus())
        try:
            out = await _run(tool_loop(provider, [add]), _turn())
        finally:
            await provider.aclose()
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == TEXT_STREAM_TEXT
    second = server.requests[1].body["messages"]
    (use,) = [b for b in second[1]["content"] if b["type"] == "tool_use"]
    assert use["input"] == {"_unparsed_arguments": '{"a": 1, "b"'}
    (result,) = second[2]["content"]
    assert result["type"] == "tool_result" and result["is_error"] is True
