"""MockProvider: scripted answers, virtual-time latency, tool calls, errors, events, hot sharing."""

from __future__ import annotations

import pytest
import reactivex.operators as ops
from reactivex.testing import TestScheduler

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import ConfigError, ProviderError, RateLimitError, StreamInterruptedError
from rxkit.providers import Price, create_provider
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.telemetry.events import (
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    ProviderFirstToken,
)
from rxkit.types import ChatRequest, Message, ToolCall, Usage


def req(text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[Message.system("sys"), Message.user(text)])


class Recorder:
    def __init__(self, scheduler: TestScheduler | None = None) -> None:
        self.scheduler = scheduler
        self.values: list[object] = []
        self.times: list[float] = []
        self.error: Exception | None = None
        self.completed_at: float | None = None

    def on_next(self, value: object) -> None:
        self.values.append(value)
        self.times.append(self.scheduler.clock if self.scheduler else 0.0)

    def on_error(self, error: Exception) -> None:
        self.error = error

    def on_completed(self) -> None:
        self.completed_at = self.scheduler.clock if self.scheduler else 0.0

    def texts(self) -> list[str]:
        return [v.text for v in self.values if isinstance(v, TextDelta)]


def subscribe(obs, rec: Recorder, scheduler=None):
    return obs.subscribe(rec.on_next, rec.on_error, rec.on_completed, scheduler=scheduler)


def test_zero_latency_emits_synchronously_and_records_requests(bus: EventBus) -> None:
    mock = MockProvider(["Hello big world"], bus=bus)
    rec = Recorder()
    subscribe(mock.stream(req("ping")), rec)
    assert rec.texts() == ["Hello ", "big ", "world"]
    end = rec.values[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    assert end.response.text == "Hello big world"
    assert end.response.finish_reason == "stop" and end.response.provider == "mock"
    assert rec.completed_at == 0.0 and rec.error is None
    assert [r.messages[-1].text for r in mock.requests] == ["ping"]


def test_chunk_size_and_explicit_chunks() -> None:
    mock = MockProvider([MockResponse("abcdefg", chunk_size=3), MockResponse(chunks=["x", "yz"])])
    a, b = Recorder(), Recorder()
    subscribe(mock.stream(req()), a)
    subscribe(mock.stream(req()), b)
    assert a.texts() == ["abc", "def", "g"]
    assert b.texts() == ["x", "yz"] and b.values[-1].response.text == "xyz"
    with pytest.raises(ConfigError):
        MockResponse("abc", chunks=["x"])
    with pytest.raises(ConfigError):
        MockResponse("abc", chunk_size=0)


def test_latency_on_virtual_time(bus: EventBus) -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c", first_token_latency=0.5, chunk_latency=0.1)], bus=bus)
    rec = Recorder(sch)
    sch.schedule_absolute(1.0, lambda *_: subscribe(mock.stream(req()), rec, scheduler=sch))
    sch.advance_to(10.0)
    assert rec.texts() == ["a ", "b ", "c"]
    assert rec.times == pytest.approx([1.5, 1.6, 1.7, 1.7])
    assert rec.completed_at == pytest.approx(1.7)
    response = rec.values[-1].response
    assert response.ttft_s == pytest.approx(0.5) and response.latency_s == pytest.approx(0.7)
    first = bus.events(ProviderFirstToken)[0]
    assert first.ttft_s == pytest.approx(0.5)
    done = bus.events(ProviderCallCompleted)[0]
    assert done.duration_s == pytest.approx(0.7) and done.ttft_s == pytest.approx(0.5)


def test_provider_wide_latency_and_scheduler_argument() -> None:
    sch = TestScheduler()
    mock = MockProvider(["x y"], first_token_latency=0.2, chunk_latency=0.3, scheduler=sch)
    rec = Recorder(sch)
    subscribe(mock.stream(req()), rec)  # no subscribe-time scheduler: the provider's own is used
    sch.advance_to(5.0)
    assert rec.times == pytest.approx([0.2, 0.5, 0.5])


def test_dispose_mid_stream_cancels_the_call() -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c d", chunk_latency=1.0)])
    rec = Recorder(sch)
    sub = subscribe(mock.stream(req()), rec, scheduler=sch)
    sch.schedule_absolute(1.5, lambda *_: sub.dispose())
    sch.advance_to(10.0)
    assert rec.texts() == ["a ", "b "]  # t=0 and t=1; nothing after the dispose at 1.5
    assert rec.completed_at is None and rec.error is None
    assert len(sch._queue) == 0  # no timer left behind


def test_tool_calls_usage_and_cost(bus: EventBus) -> None:
    call = ToolCall(id="c1", name="add", arguments='{"a": 1}')
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=200)
    mock = MockProvider(
        [MockResponse("Let me add.", tool_calls=[call], usage=usage)],
        prices={"mock": Price(input=1.0, output=2.0, cached_input=0.5)},
        bus=bus,
    )
    rec = Recorder()
    subscribe(mock.stream(req()), rec)
    assert rec.texts() == ["Let ", "me ", "add."]
    assert [type(v).__name__ for v in rec.values[3:]] == ["ToolCallElement", "EndOfTurn"]
    assert rec.values[3] == ToolCallElement(call)
    response = rec.values[-1].response
    assert response.finish_reason == "tool_calls"
    assert response.message.tool_calls == [call]
    assert response.usage == usage
    assert response.cost.input_cost == pytest.approx(800 / 1e6)
    assert response.cost.cached_input_cost == pytest.approx(100 / 1e6)
    assert response.cost.output_cost == pytest.approx(1000 / 1e6)
    done = bus.events(ProviderCallCompleted)[0]
    assert done.input_tokens == 1000 and done.cost == pytest.approx(response.cost.total)


def test_default_usage_is_estimated() -> None:
    mock = MockProvider(["12345678"])
    rec = Recorder()
    subscribe(mock.stream(ChatRequest(messages=[Message.user("abcd")])), rec)
    assert rec.values[-1].response.usage == Usage(input_tokens=1, output_tokens=2, estimated=True)
    assert rec.values[-1].response.cost.estimated  # and its cost says so


def test_error_at_chunk_on_virtual_time(bus: EventBus) -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c", error_at_chunk=2, chunk_latency=0.1)], bus=bus)
    rec = Recorder(sch)
    subscribe(mock.stream(req()), rec, scheduler=sch)
    sch.advance_to(5.0)
    assert rec.texts() == ["a ", "b "]
    assert isinstance(rec.error, StreamInterruptedError)
    assert rec.error.partial == "a b " and rec.error.provider == "mock"
    failed = bus.events(ProviderCallFailed)
    assert len(failed) == 1 and failed[0].error_type == "StreamInterruptedError"
    assert failed[0].duration_s == pytest.approx(0.2)
    assert not bus.events(ProviderCallCompleted)


def test_error_before_first_chunk_and_exception_in_script() -> None:
    limited = RateLimitError("slow down", provider="mock", status=429)
    mock = MockProvider([MockResponse(error=limited), ProviderError("boom"), "ok"])
    recs = [Recorder() for _ in range(3)]
    for rec in recs:
        subscribe(mock.stream(req()), rec)
    assert recs[0].values == [] and recs[0].error is limited
    assert isinstance(recs[1].error, ProviderError) and recs[1].values == []
    assert recs[2].texts() == ["ok"]


def test_script_function_gets_the_request_and_its_failure_becomes_an_error() -> None:
    def answer(request: ChatRequest) -> str:
        return request.messages[-1].text.upper()

    def broken(request: ChatRequest) -> str:
        raise ValueError("bad script")

    mock = MockProvider([answer, broken])
    a, b = Recorder(), Recorder()
    subscribe(mock.stream(req("shout")), a)
    subscribe(mock.stream(req()), b)
    assert a.values[-1].response.text == "SHOUT"
    assert isinstance(b.error, ProviderError) and "bad script" in str(b.error)


def test_echoes_the_last_user_message_when_the_script_is_done() -> None:
    mock = MockProvider(["scripted"])
    assert mock.remaining == 1
    first, second = Recorder(), Recorder()
    subscribe(mock.stream(req("one")), first)
    subscribe(mock.stream(req("say this back")), second)
    assert first.values[-1].response.text == "scripted"
    assert second.values[-1].response.text == "say this back"
    assert mock.remaining == 0


def test_events_in_order(bus: EventBus) -> None:
    mock = MockProvider(["hi there"], bus=bus)
    subscribe(mock.stream(req()), Recorder())
    kinds = [type(e) for e in bus.events()]
    assert kinds == [ProviderCallStarted, ProviderFirstToken, ProviderCallCompleted]
    ids = {e.call_id for e in bus.events()}
    assert len(ids) == 1 and ids.pop().startswith("mock-")


def test_hot_sharing_and_late_subscriber_gets_accumulated_text(bus: EventBus) -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c", chunk_latency=1.0)], bus=bus)
    stream = mock.stream(req())
    early, late, after = Recorder(sch), Recorder(sch), Recorder(sch)
    subscribe(stream, early, scheduler=sch)
    sch.schedule_absolute(1.5, lambda *_: subscribe(stream, late, scheduler=sch))
    sch.schedule_absolute(9.0, lambda *_: subscribe(stream, after, scheduler=sch))
    sch.advance_to(10.0)
    assert early.texts() == ["a ", "b ", "c"]
    assert late.texts() == ["a b ", "c"] and late.times[:2] == [1.5, 2.0]
    assert after.texts() == ["a b c"] and isinstance(after.values[-1], EndOfTurn)
    assert early.completed_at == late.completed_at == 2.0 and after.completed_at == 9.0
    assert len(bus.events(ProviderCallStarted)) == 1  # one call, shared
    assert len(mock.requests) == 1


def test_call_continues_while_one_subscriber_remains_and_restarts_after_all_left() -> None:
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c", chunk_latency=1.0), "next"])
    stream = mock.stream(req())
    a, b, c = Recorder(sch), Recorder(sch), Recorder(sch)
    sub_a = subscribe(stream, a, scheduler=sch)
    sub_b = subscribe(stream, b, scheduler=sch)
    sch.schedule_absolute(0.5, lambda *_: sub_a.dispose())
    sch.schedule_absolute(1.5, lambda *_: sub_b.dispose())
    sch.schedule_absolute(3.0, lambda *_: subscribe(stream, c, scheduler=sch))
    sch.advance_to(10.0)
    assert a.texts() == ["a "] and b.texts() == ["a ", "b "]
    assert c.texts() == ["a ", "b ", "c"] and c.completed_at == 5.0  # restarted, same scripted answer
    assert mock.remaining == 1 and len(mock.requests) == 2


def test_chat_returns_the_response() -> None:
    import asyncio

    mock = MockProvider(["fine"])
    response = asyncio.run(mock.chat(req()))
    assert response.text == "fine"


def test_registry_builds_from_a_spec() -> None:
    mock = create_provider(
        {
            "type": "mock",
            "model": "m1",
            "extra": {
                "responses": [
                    "plain",
                    {"text": "tooling", "tool_calls": [{"id": "1", "name": "t"}], "usage": {"input_tokens": 3}},
                    {"error": "refused"},
                ],
                "chunk_size": 2,
            },
        }
    )
    assert isinstance(mock, MockProvider) and mock.model == "m1"
    recs = [Recorder() for _ in range(3)]
    for rec in recs:
        subscribe(mock.stream(req()), rec)
    assert recs[0].texts() == ["pl", "ai", "n"]
    assert recs[1].values[-1].response.message.tool_calls[0].name == "t"
    assert recs[1].values[-1].response.usage.input_tokens == 3
    assert isinstance(recs[2].error, ProviderError) and "refused" in str(recs[2].error)
    with pytest.raises(ConfigError, match="unknown mock provider options"):
        create_provider({"type": "mock", "extra": {"speed": 3}})
    with pytest.raises(ConfigError, match="invalid mock response 0"):
        create_provider({"type": "mock", "extra": {"responses": [{"txt": "typo"}]}})


def test_bad_script_items_are_refused() -> None:
    with pytest.raises(ConfigError):
        MockProvider([42])  # type: ignore[list-item]


def test_to_list_on_a_real_loop_with_latency() -> None:
    import asyncio

    async def main() -> list[object]:
        mock = MockProvider([MockResponse("a b", first_token_latency=0.01, chunk_latency=0.01)])
        return await mock.stream(req()).pipe(ops.to_list())

    values = asyncio.run(main())
    assert [v.text for v in values if isinstance(v, TextDelta)] == ["a ", "b"]
