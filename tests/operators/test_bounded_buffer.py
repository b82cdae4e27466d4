"""bounded_buffer: overflow policies on virtual time, controls, and a real async producer that waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import BufferOverflowError, ConfigError, GraphError
from rxkit.graph import Graph
from rxkit.operators import BufferStage, bounded_buffer
from rxkit.scheduling import from_async_iterable
from rxkit.testing import ano_leaks, run_virtual


def burst(*values: Any, at: float = 1.0) -> list[tuple[float, Any]]:
    """Values pushed at the same instant, before any drain turn can run."""
    return [(at, v) for v in values]


def test_spaced_elements_pass_at_their_times() -> None:
    run = run_virtual(bounded_buffer(2), [(1.0, "a"), (2.0, "b"), (3.0, "c")], complete_at=4.0)
    assert run.timeline() == [(1.0, "a"), (2.0, "b"), (3.0, "c")]
    assert run.completed_at == 4.0
    assert run.subscription == (0.0, 4.0)


def test_drop_oldest_keeps_the_latest_and_counts_drops() -> None:
    stage = bounded_buffer(2, "drop_oldest")
    run = run_virtual(stage, burst(1, 2, 3, 4, 5), complete_at=2.0)
    assert run.timeline() == [(1.0, 4), (1.0, 5)]
    assert stage.dropped == 3
    assert run.completed_at == 2.0
    assert run.subscription == (0.0, 2.0)


def test_drop_newest_keeps_the_first() -> None:
    stage = bounded_buffer(2, "drop_newest")
    run = run_virtual(stage, burst(1, 2, 3, 4, 5), complete_at=2.0)
    assert run.values == [1, 2]
    assert stage.dropped == 3


def test_dropped_adds_up_over_subscriptions() -> None:
    stage = bounded_buffer(1, "drop_newest")
    run_virtual(stage, burst(1, 2, 3), complete_at=2.0)
    run_virtual(stage, burst(1, 2), complete_at=2.0)
    assert stage.dropped == 3


def test_error_policy_fails_at_once_and_unsubscribes() -> None:
    run = run_virtual(bounded_buffer(2, "error"), burst(1, 2, 3), complete_at=5.0)
    assert isinstance(run.error, BufferOverflowError)
    assert "2 elements" in str(run.error)
    assert run.values == []  # the error goes ahead of queued data: fail fast
    assert run.subscription == (0.0, 1.0)  # the producer was unsubscribed at the overflow


def test_wait_policy_with_a_push_source_that_cannot_wait_is_an_overflow() -> None:
    run = run_virtual(bounded_buffer(1, "wait"), burst(1, 2), complete_at=5.0)
    assert isinstance(run.error, BufferOverflowError)
    assert "from_async_iterable" in str(run.error)
    assert run.subscription == (0.0, 1.0)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_controls_are_never_dropped(policy: str) -> None:
    eot1, eot2 = EndOfTurn(), EndOfTurn()
    stage = bounded_buffer(1, policy)
    run = run_virtual(stage, burst("d1", eot1, "d2", "d3", eot2), complete_at=2.0)
    kept = "d3" if policy == "drop_oldest" else "d1"
    assert [id(v) for v in run.values] == [id(x) for x in ([eot1, kept, eot2] if kept == "d3" else [kept, eot1, eot2])]
    assert stage.dropped == 2


def test_interrupt_passes_ahead_of_queued_data() -> None:
    stop = Interrupt("barge-in")
    run = run_virtual(bounded_buffer(8), burst("a", "b", EndOfTurn(), stop), complete_at=2.0)
    assert run.values == [stop, "a", "b", EndOfTurn()]


def test_completion_and_errors_wait_behind_queued_elements() -> None:
    run = run_virtual(bounded_buffer(8), burst(1, 2, 3), complete_at=1.0)
    assert run.values == [1, 2, 3]
    assert run.completed_at == 1.0
    boom = ValueError("upstream broke")
    run = run_virtual(bounded_buffer(8), burst(1, 2), error_at=(1.0, boom))
    assert run.values == [1, 2]
    assert run.error is boom


def test_the_producer_never_runs_the_consumer_inline() -> None:
    sch = TestScheduler()
    seen: list[Any] = []
    seen_when_on_next_returned: list[int] = []

    def source(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
        def emit(*_: Any) -> None:
            observer.on_next("x")
            seen_when_on_next_returned.append(len(seen))

        return sch.schedule_absolute(1.0, emit)

    reactivex.create(source).pipe(bounded_buffer(4)).subscribe(seen.append, scheduler=sch)
    sch.advance_to(2.0)
    assert seen_when_on_next_returned == [0]  # on_next only queued it
    assert seen == ["x"]  # a drain turn on the scheduler delivered it


def test_dispose_cancels_queued_delivery() -> None:
    run = run_virtual(bounded_buffer(8), burst("a", "b", "c"), dispose_at=1.0)
    assert run.values == []  # disposed before the first drain turn ran
    assert run.subscription == (0.0, 1.0)


def test_dispose_midway_unsubscribes_upstream() -> None:
    run = run_virtual(bounded_buffer(8), [(1.0, "a"), (2.0, "b"), (3.0, "c")], dispose_at=2.5, complete_at=4.0)
    assert run.timeline() == [(1.0, "a"), (2.0, "b")]
    assert run.subscription == (0.0, 2.5)
    assert not run.completed


def test_own_scheduler_argument_wins() -> None:
    mine = TestScheduler()
    run = run_virtual(bounded_buffer(4, scheduler=mine), burst("a"), complete_at=2.0)
    assert run.values == []  # queued, waiting for a turn on `mine`, which never advanced
    assert not run.completed


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        bounded_buffer(0)
    with pytest.raises(ConfigError, match="drop_oldest"):
        bounded_buffer(4, "sometimes")


def test_without_a_scheduler_or_loop_it_fails_with_a_clear_error() -> None:
    errors: list[Exception] = []
    reactivex.of(1).pipe(bounded_buffer(4)).subscribe(on_error=errors.append)
    assert len(errors) == 1 and isinstance(errors[0], GraphError)
    assert "running asyncio event loop" in str(errors[0])


def test_stage_metadata() -> None:
    stage = bounded_buffer(16, "drop_newest")
    assert isinstance(stage, BufferStage)
    assert stage.name == "bounded_buffer(16, drop_newest)"
    assert stage.dropped == 0


async def _numbers(n: int, produced: list[int]) -> AsyncIterator[int]:
    for i in range(n):
        produced[0] += 1
        yield i


async def test_wait_policy_makes_an_async_producer_wait() -> None:
    n, size = 2_000, 16
    produced = [0]
    stage = bounded_buffer(size, "wait")
    received: list[int] = []
    ahead: list[int] = []
    done = asyncio.Event()

    def on_next(x: int) -> None:
        received.append(x)
        ahead.append(produced[0] - len(received))  # pulled from the producer but not yet consumed

    async with ano_leaks():
        source = from_async_iterable(lambda: _numbers(n, produced))
        sub = source.pipe(stage).subscribe(on_next, on_completed=done.set)
        await asyncio.wait_for(done.wait(), 10)
        sub.dispose()
    assert received == list(range(n))  # nothing lost, in order
    assert stage.dropped == 0
    assert max(ahead) <= size  # the generator was never pulled further than the buffer's bound
    assert max(ahead) >= size // 2  # ... and the buffer did fill, so the bound is what held it back


async def test_the_same_producer_overruns_a_drop_buffer() -> None:
    n, size = 2_000, 16
    produced = [0]
    stage = bounded_buffer(size, "drop_oldest")
    received: list[int] = []
    done = asyncio.Event()
    async with ano_leaks():
        source = from_async_iterable(lambda: _numbers(n, produced))
        sub = source.pipe(stage).subscribe(received.append, on_completed=done.set)
        await asyncio.wait_for(done.wait(), 10)
        sub.dispose()
    assert stage.dropped > 0
    assert len(received) + stage.dropped == n
    assert received[-1] == n - 1  # the latest always survives drop_oldest


async def test_disposing_a_waiting_producer_cancels_it() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[TextDelta]:
        try:
            while True:
                yield TextDelta("x")
        finally:
            closed.set()

    got: list[Any] = []
    async with ano_leaks():
        sub = from_async_iterable(endless).pipe(bounded_buffer(4, "wait")).subscribe(got.append)
        while len(got) < 10:
            await asyncio.sleep(0)
        sub.dispose()
        await asyncio.wait_for(closed.wait(), 5)
    assert len(got) >= 10


async def test_in_a_graph_on_the_running_loop() -> None:
    g = Graph.chain(bounded_buffer(4, "drop_newest"))
    assert await g.arun(["a", "b"]) == ["a", "b"]


async def test_the_drain_waits_for_room_in_the_consumers_own_buffer() -> None:
    """A drop buffer inside astream(wait): its drain turns pause while astream's buffer is full."""
    stage = bounded_buffer(1_000, "drop_newest")
    got = []
    async with ano_leaks():
        async for x in Graph.chain(stage).astream(reactivex.from_iterable(range(200)), maxsize=4):
            got.append(x)
            for _ in range(3):  # a consumer slower than one element per loop turn
                await asyncio.sleep(0)
    assert got == list(range(200))
    assert stage.dropped == 0


async def test_controls_are_not_held_back_by_a_full_consumer_buffer() -> None:
    subject: Subject[Any] = Subject()
    stop = Interrupt("now")
    stream = Graph.chain(bounded_buffer(100)).astream(subject, maxsize=2)
    first = asyncio.ensure_future(stream.__anext__())  # subscribes
    await asyncio.sleep(0)
    for i in range(20):
        subject.on_next(i)
    assert await first == 0
    for _ in range(10):  # astream's buffer fills (2), the rest waits in ours
        await asyncio.sleep(0)
    subject.on_next(stop)
    await asyncio.sleep(0)  # one loop turn: one drain turn
    assert await stream.__anext__() is stop  # it went past the 17 data elements queued before it
    subject.on_completed()
    assert [x async for x in stream] == list(range(1, 20))
