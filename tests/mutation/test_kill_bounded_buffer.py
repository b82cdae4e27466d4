"""Pins down rxkit.operators.bounded_buffer where mutation testing found it loose (issue 18).

The task that waits for room in the consumer's buffer: cancelled on dispose,
replaced (not leaked) when an urgent control cuts the wait short; the end of
the stream delivered once; the error policy letting go of its queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import reactivex
from reactivex.disposable import Disposable
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.buffering import BoundedBuffer, backpressure, current_backpressure
from rxkit.elements import EndOfTurn, Interrupt
from rxkit.errors import BufferOverflowError
from rxkit.operators import BufferStage, bounded_buffer
from rxkit.testing import ano_leaks, run_virtual


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def room_waiters() -> int:
    return sum(1 for t in asyncio.all_tasks() if not t.done() and "wait_for_room" in repr(t.get_coro()))


def full_gate() -> BoundedBuffer[Any]:
    """The buffer of a consumer that is itself full (astream's, or a wait buffer downstream)."""
    gate: BoundedBuffer[Any] = BoundedBuffer(1, "wait")
    gate.offer("queued downstream")
    return gate


async def test_dispose_while_waiting_for_room_cancels_the_waiting_task() -> None:
    gate = full_gate()
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    async with ano_leaks():
        with backpressure(gate):
            sub = subject.pipe(bounded_buffer(8)).subscribe(got.append)
        subject.on_next(1)
        await settle()
        assert got == [] and room_waiters() == 1  # waits for room downstream
        sub.dispose()
        await settle()
        assert room_waiters() == 0
        gate.poll()  # room now, but nobody is subscribed
        await settle()
    assert got == []


async def test_an_urgent_control_cuts_the_wait_short_and_the_waiter_is_replaced() -> None:
    gate = full_gate()
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    done = asyncio.Event()
    async with ano_leaks():
        with backpressure(gate):
            sub = subject.pipe(bounded_buffer(8)).subscribe(got.append, on_completed=done.set)
        subject.on_next(1)
        await settle()
        stop = Interrupt("now")
        subject.on_next(stop)
        await settle()
        assert got == [stop]  # not held back behind the data waiting for room
        assert room_waiters() == 1  # the first waiter was cancelled, a new one waits for the data
        subject.on_completed()
        await settle()
        assert not done.is_set()  # completion waits behind the queued element
        gate.poll()
        await asyncio.wait_for(done.wait(), 1)
        sub.dispose()
    assert got == [stop, 1]


async def test_a_plain_control_does_not_overtake_data_waiting_for_room() -> None:
    gate = full_gate()
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    async with ano_leaks():
        with backpressure(gate):
            sub = subject.pipe(bounded_buffer(8)).subscribe(got.append)
        subject.on_next(1)
        eot = EndOfTurn()
        subject.on_next(eot)
        await settle()
        assert got == [] and room_waiters() == 1
        gate.poll()
        await settle()
        assert got == [1, eot]
        sub.dispose()


async def test_a_gate_with_room_does_not_hold_data_back() -> None:
    gate: BoundedBuffer[Any] = BoundedBuffer(2, "wait")
    gate.offer("one")  # not full
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    with backpressure(gate):
        sub = subject.pipe(bounded_buffer(8)).subscribe(got.append)
    subject.on_next(1)
    await settle()
    assert got == [1] and room_waiters() == 0
    sub.dispose()


async def test_downstream_sees_its_consumers_gate_during_delivery() -> None:
    gate = BoundedBuffer[Any](4, "wait")
    seen: list[Any] = []
    subject: Subject[Any] = Subject()
    with backpressure(gate):
        sub = subject.pipe(bounded_buffer(8, "wait")).subscribe(lambda _: seen.append(current_backpressure()))
    subject.on_next(1)  # pushed from a context that has no gate: the drain turn inherits it
    await settle()
    assert seen == [gate]
    sub.dispose()


def test_error_policy_delivers_nothing_queued_and_ignores_later_input() -> None:
    run = run_virtual(bounded_buffer(1, "error"), [(1.0, 1), (1.0, 2), (1.0, 3), (2.0, 4)], complete_at=5.0)
    assert run.values == []
    assert isinstance(run.error, BufferOverflowError)
    assert run.completed_at is None
    assert run.subscription == (0.0, 1.0)


def test_the_end_is_delivered_once() -> None:
    def twice(source: Any) -> Any:
        def subscribe(observer: Any, scheduler: Any = None) -> Any:
            def done() -> None:
                observer.on_completed()
                observer.on_error(RuntimeError("late"))
                observer.on_completed()

            return source.subscribe(observer.on_next, observer.on_error, done, scheduler=scheduler)

        return reactivex.create(subscribe)

    stage = bounded_buffer(2)
    run = run_virtual(lambda s: stage(twice(s)), [(1.0, "a")], complete_at=2.0)
    assert run.values == ["a"]
    assert run.completed_at == 2.0
    assert run.error is None


def test_an_error_waits_behind_queued_elements_and_nothing_follows_it() -> None:
    boom = RuntimeError("boom")
    run = run_virtual(bounded_buffer(4), [(1.0, "a"), (1.0, "b")], error_at=(1.0, boom))
    assert run.values == ["a", "b"]
    assert run.error is boom
    assert run.completed_at is None


class CountingGate(BoundedBuffer[Any]):
    """A consumer's buffer that counts how often a producer starts waiting for room in it."""

    waits = 0

    async def wait_for_room(self) -> None:
        self.waits += 1
        await super().wait_for_room()


async def test_data_arriving_during_the_wait_does_not_restart_it() -> None:
    gate = CountingGate(1, "wait")
    gate.offer("queued downstream")
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    async with ano_leaks():
        with backpressure(gate):
            sub = subject.pipe(bounded_buffer(8)).subscribe(got.append)
        subject.on_next(1)
        await settle()
        for x in (2, 3, 4):  # plain values: no `control` attribute at all
            subject.on_next(x)
            await settle()
        assert gate.waits == 1 and room_waiters() == 1 and got == []
        gate.poll()
        await settle()
        assert got[:1] == [1]
        sub.dispose()


def test_a_burst_schedules_one_drain_turn_per_element() -> None:
    class Counting(TestScheduler):
        calls = 0

        def schedule(self, action: Any, state: Any = None) -> Any:
            self.calls += 1
            return super().schedule(action, state)

    sch = Counting()
    subject: Subject[Any] = Subject()
    got: list[Any] = []
    subject.pipe(bounded_buffer(8, scheduler=sch)).subscribe(got.append)
    for x in range(5):
        subject.on_next(x)
    assert sch.calls == 1  # one turn pending, not one per element
    sch.start()
    assert got == [0, 1, 2, 3, 4]
    assert sch.calls == 5


def test_the_subscribe_time_scheduler_is_passed_upstream_and_no_description() -> None:
    seen: list[Any] = []

    def source(observer: Any, scheduler: Any = None) -> Any:
        seen.append(scheduler)
        return Disposable()

    sch = TestScheduler()
    reactivex.create(source).pipe(bounded_buffer(2)).subscribe(scheduler=sch)
    assert seen == [sch]
    assert bounded_buffer(2).description == ""


def test_buffer_stage_keeps_its_description_and_counts_from_zero() -> None:
    stage = BufferStage("mine", lambda source: source, "what it does")
    assert (stage.name, stage.description, stage.dropped) == ("mine", "what it does", 0)
