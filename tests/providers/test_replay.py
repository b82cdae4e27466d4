"""ReplayProvider and the recorder: round trips, pacing on virtual time, malformed files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import reactivex
import reactivex.operators as ops
from reactivex.testing import TestScheduler

from rxkit.elements import (
    AudioFrame,
    EndOfStream,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    MessageElement,
    TextDelta,
    ToolCallElement,
)
from rxkit.errors import ConfigError, ProviderError, StreamInterruptedError, ToolTimeoutError
from rxkit.providers import create_provider
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.providers.replay import Recorder, RecordingProvider, ReplayProvider, load_recording, record, recording
from rxkit.telemetry.events import EventBus, ProviderCallCompleted
from rxkit.types import ChatRequest, Message, ToolCall

REQ = ChatRequest(messages=[Message.user("hi")])


def collect(obs, scheduler: TestScheduler | None = None, until: float = 100.0):
    out: list[tuple[float, object]] = []
    end: list[object] = []
    obs.subscribe(
        lambda v: out.append((scheduler.clock if scheduler else 0.0, v)),
        lambda e: end.append(e),
        lambda: end.append("done"),
        scheduler=scheduler,
    )
    if scheduler is not None:
        scheduler.advance_to(until)
    return out, end


def record_mock(path: Path, *responses: MockResponse) -> TestScheduler:
    """Record mock calls with real timings (on virtual time) into ``path``."""
    sch = TestScheduler()
    mock = MockProvider(list(responses))
    for _ in responses:
        collect(record(mock.stream(REQ), path, append=True), sch, until=sch.clock + 100)
    return sch


def test_record_then_replay_at_recorded_speed(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    call = ToolCall(id="c", name="f", arguments="{}")
    record_mock(path, MockResponse("a b c", first_token_latency=0.5, chunk_latency=0.25, tool_calls=[call]))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {"rxkit": "recording", "version": 1}
    assert [x["type"] for x in lines[1:]] == ["text", "text", "text", "tool_call", "end_of_turn"]
    assert [x["t"] for x in lines[1:]] == [0.5, 0.75, 1.0, 1.25, 1.25]

    sch = TestScheduler()
    replay = ReplayProvider(path)
    out, end = collect(replay.stream(REQ), sch)
    assert [t for t, _ in out] == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.25])
    assert [v.text for _, v in out[:3]] == ["a ", "b ", "c"]
    assert out[3][1] == ToolCallElement(call)
    assert isinstance(out[4][1], EndOfTurn) and out[4][1].response.text == "a b c"
    assert end == ["done"]
    assert replay.requests == [REQ]


def test_speed_factor_and_as_fast_as_possible(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    record_mock(path, MockResponse("a b", first_token_latency=1.0, chunk_latency=1.0))
    sch = TestScheduler()
    out, _ = collect(ReplayProvider(path, speed=4).stream(REQ), sch)
    assert [t for t, _ in out] == pytest.approx([0.25, 0.5, 0.5])
    out, end = collect(ReplayProvider(path, speed=0).stream(REQ))  # synchronous, no scheduler needed
    assert [type(v).__name__ for _, v in out] == ["TextDelta", "TextDelta", "EndOfTurn"] and end == ["done"]
    with pytest.raises(ConfigError):
        ReplayProvider(path, speed=-1)


def test_turns_play_in_order_then_fail_or_loop(tmp_path: Path, bus: EventBus) -> None:
    path = tmp_path / "r.jsonl"
    record_mock(path, MockResponse("one"), MockResponse("two"))
    replay = ReplayProvider(path, speed=0, bus=bus)
    texts = []
    for _ in range(2):
        out, _ = collect(replay.stream(REQ))
        texts.append(out[-1][1].response.text)
    assert texts == ["one", "two"]
    assert len(bus.events(ProviderCallCompleted)) == 2
    _, end = collect(replay.stream(REQ))
    assert isinstance(end[0], ProviderError) and "no more turns" in str(end[0])
    looping = ReplayProvider(path, speed=0, loop=True)
    got = [collect(looping.stream(REQ))[0][-1][1].response.text for _ in range(3)]
    assert got == ["one", "two", "one"]


def test_errors_are_recorded_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    record_mock(path, MockResponse("a b c", error_at_chunk=2, chunk_latency=0.1), MockResponse("after"))
    replay = ReplayProvider(path, speed=0)
    out, end = collect(replay.stream(REQ))
    assert [v.text for _, v in out] == ["a ", "b "]
    assert isinstance(end[0], StreamInterruptedError) and "interrupted" in str(end[0])
    out, end = collect(replay.stream(REQ))  # the error ended the first turn; the next one plays
    assert out[-1][1].response.text == "after"


def test_every_element_kind_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    elements = [
        TextDelta("t"),
        MessageElement(Message.user("m")),
        ErrorElement(ToolTimeoutError("slow tool"), stage="tools"),
        Interrupt("barge-in"),
        AudioFrame(b"\x01\x02\x03\x04", 16000, 1, 0.5),
        EndOfStream(),
        EndOfTurn(),
    ]
    with Recorder(path) as rec:
        for i, e in enumerate(elements):
            rec.write(e, i / 10)
    [turn] = load_recording(path)
    back = [x for _, x in turn]
    assert back[0] == elements[0] and back[1] == elements[1]
    assert isinstance(back[2], ErrorElement) and isinstance(back[2].error, ToolTimeoutError)
    assert back[2].stage == "tools" and str(back[2].error) == "slow tool"
    assert back[3:] == elements[3:]
    assert [t for t, _ in turn] == pytest.approx([i / 10 for i in range(7)])


def test_recording_an_unknown_element_fails_with_config_error(tmp_path: Path) -> None:
    class Odd(TextDelta):
        __slots__ = ()

    _, end = collect(reactivex.of(TextDelta("ok"), Odd("x")).pipe(recording(tmp_path / "x.jsonl")))
    assert isinstance(end[0], ConfigError) and "Odd" in str(end[0])


def test_record_closes_the_file_on_dispose(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    sch = TestScheduler()
    mock = MockProvider([MockResponse("a b c d", chunk_latency=1.0)])
    sub = record(mock.stream(REQ), path, scheduler=sch).subscribe(lambda _: None, scheduler=sch)
    sch.advance_to(1.5)
    sub.dispose()
    lines = path.read_text().splitlines()  # flushed and closed: the two elements so far are there
    assert [json.loads(x)["type"] for x in lines[1:]] == ["text", "text"]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"t": 0, "type": "text", "text": "a"}\nnot json\n', 2, "not JSON"),
        ('{"t": 0, "type": "text", "text": "a"}\n[1, 2]\n', 2, "JSON object"),
        ('\n\n{"type": "text", "text": "a"}\n', 3, "'t' must be a number"),
        ('{"t": 1, "type": "text", "text": "a"}\n{"t": 0.5, "type": "text", "text": "b"}\n', 2, "backwards"),
        ('{"t": 0, "type": "telepathy"}\n', 1, "unknown element type"),
        ('{"t": 0, "type": "text"}\n', 1, "missing field"),
        ('{"t": 0, "type": "text", "text": 5}\n', 1, "expected a string"),
        ('{"t": 0, "type": "end_of_turn", "response": {"message": 3}}\n', 1, "invalid 'end_of_turn' line"),
        ('{"t": 0, "type": "audio", "pcm": "***", "sample_rate": 16000}\n', 1, "invalid 'audio' line"),
        ('{"rxkit": "recording", "version": 9}\n', 1, "unsupported recording version"),
    ],
)
def test_malformed_recording_names_the_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        ReplayProvider(path)
    assert f"{path}:{line}:" in str(info.value)
    assert info.value.line == line


def test_missing_recording_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read recording"):
        ReplayProvider(tmp_path / "nope.jsonl")


def test_registry_and_recording_provider(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"

    async def main() -> list[str]:
        recorder = RecordingProvider(MockProvider(["first answer", "second"]), path)
        a = await recorder.chat(REQ)
        b = await recorder.chat(REQ)
        await recorder.aclose()
        replay = create_provider({"type": "replay", "extra": {"path": str(path), "speed": 0}})
        c = await replay.chat(REQ)
        d = await replay.stream(REQ).pipe(ops.to_list())
        return [a.text, b.text, c.text, d[-1].response.text]

    assert asyncio.run(main()) == ["first answer", "second", "first answer", "second"]
    assert len(load_recording(path)) == 2
    with pytest.raises(ConfigError, match="needs"):
        create_provider({"type": "replay"})
    with pytest.raises(ConfigError, match="unknown replay provider options"):
        create_provider({"type": "replay", "extra": {"path": str(path), "sped": 1}})
