"""EventBus: bounded backlogs, robustness against listeners, delivery on the listener's loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rxkit.telemetry.events import (
    Event,
    EventBus,
    ProviderCallCompleted,
    StageCompleted,
    StageStarted,
    ToolCallStarted,
    default_bus,
)


def test_listener_without_a_loop_gets_events_right_away() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    event = StageStarted(stage="llm")
    bus.publish(event)
    assert seen == [event]
    assert bus.events() == [event]


def test_type_filters() -> None:
    bus = EventBus()
    stages: list[Event] = []
    bus.subscribe(stages.append, StageStarted, StageCompleted)
    bus.publish(StageStarted(stage="a"))
    bus.publish(ToolCallStarted(tool="t"))
    bus.publish(StageCompleted(stage="a"))
    assert [type(e) for e in stages] == [StageStarted, StageCompleted]
    assert bus.events(ToolCallStarted) == [ToolCallStarted(tool="t", time=bus.events()[1].time)]


def test_a_raising_listener_does_not_break_publishing() -> None:
    bus = EventBus()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    for i in range(3):
        bus.publish(StageStarted(stage=str(i)))  # must not raise
    assert [e.stage for e in seen] == ["0", "1", "2"]  # type: ignore[attr-defined]


def test_history_is_bounded() -> None:
    bus = EventBus(history_size=3)
    for i in range(10):
        bus.publish(StageStarted(stage=str(i)))
    assert [e.stage for e in bus.events()] == ["7", "8", "9"]  # type: ignore[attr-defined]
    bus.clear()
    assert bus.events() == []


def test_listener_backlog_is_bounded_and_drops_are_counted() -> None:
    async def main() -> tuple[list[str], int, int]:
        bus = EventBus(listener_backlog=5)
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append(e.stage))  # type: ignore[attr-defined]
        for i in range(12):  # the loop does not run in between: the backlog fills
            bus.publish(StageStarted(stage=str(i)))
        before = len(seen)
        await asyncio.sleep(0)
        return seen, before, bus.dropped

    seen, before, dropped = asyncio.run(main())
    assert before == 0  # nothing delivered inline on the publisher's call
    assert seen == ["7", "8", "9", "10", "11"]  # the oldest were dropped
    assert dropped == 7


def test_listeners_on_a_loop_get_events_on_that_loop() -> None:
    async def main() -> tuple[set[int], int]:
        bus = EventBus()
        threads: set[int] = set()
        got = asyncio.Event()

        def listener(event: Event) -> None:
            threads.add(threading.get_ident())
            got.set()

        bus.subscribe(listener)
        publisher = threading.Thread(target=bus.publish, args=(StageStarted(stage="x"),))
        publisher.start()
        publisher.join()
        await asyncio.wait_for(got.wait(), 5)
        return threads, threading.get_ident()

    threads, loop_thread = asyncio.run(main())
    assert threads == {loop_thread}


def test_flush_delivers_pending_events_now() -> None:
    async def main() -> list[Event]:
        bus = EventBus()
        seen: list[Event] = []
        bus.subscribe(seen.append)
        bus.publish(StageStarted(stage="a"))
        assert seen == []
        bus.flush()
        return seen

    assert len(asyncio.run(main())) == 1


def test_unsubscribe_stops_delivery_even_of_scheduled_events() -> None:
    async def main() -> list[Event]:
        bus = EventBus()
        seen: list[Event] = []
        unsubscribe = bus.subscribe(seen.append)
        bus.publish(StageStarted(stage="a"))  # scheduled on the loop
        unsubscribe()
        await asyncio.sleep(0)
        bus.publish(StageStarted(stage="b"))
        await asyncio.sleep(0)
        return seen

    assert asyncio.run(main()) == []


def test_publishing_after_the_listeners_loop_closed_does_not_raise() -> None:
    bus = EventBus()
    seen: list[Event] = []

    async def register() -> None:
        bus.subscribe(seen.append)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(register())
    loop.close()
    bus.publish(StageStarted(stage="late"))
    assert len(seen) == 1  # delivered on the publisher's thread rather than lost or raised


def test_a_loop_closing_between_check_and_hand_off_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race where the loop closes after ``is_closed()`` said no: the publisher must not see it."""
    bus = EventBus()
    loop = asyncio.new_event_loop()
    seen: list[Event] = []

    async def register() -> None:
        bus.subscribe(seen.append)

    loop.run_until_complete(register())

    def closed_meanwhile(*args: object) -> None:
        raise RuntimeError("Event loop is closed")

    monkeypatch.setattr(loop, "call_soon_threadsafe", closed_meanwhile)
    try:
        bus.publish(StageStarted(stage="x"))
    finally:
        loop.close()
    assert len(seen) == 1


def test_events_carry_their_time_and_fields() -> None:
    e = ProviderCallCompleted(provider="mock", input_tokens=3, output_tokens=5)
    assert e.time > 0 and e.cost == 0.0 and e.ttft_s is None
    assert isinstance(default_bus, EventBus)
