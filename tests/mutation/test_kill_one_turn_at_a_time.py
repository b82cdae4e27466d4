"""Pins down rxkit.operators.one_turn_at_a_time where mutation testing found it loose (issue 18).

Turns that ignore their disposal (their late completion or error must not
count), on_cancel only with a turn in flight, the bound at exactly
max_pending, and the option checks.
"""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from rxkit.elements import EndOfTurn, Interrupt
from rxkit.errors import BufferOverflowError, ConfigError
from rxkit.operators import MAX_PENDING, one_turn_at_a_time


class Deaf:
    """Turns that keep their observer and ignore disposal, as a badly written source might."""

    def __init__(self) -> None:
        self.observers: dict[Any, abc.ObserverBase[Any]] = {}

    def __call__(self, x: Any) -> Any:
        if not isinstance(x, str):
            return reactivex.return_value(x)

        def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
            self.observers[x] = observer
            return Disposable()

        return reactivex.create(subscribe)


def collect(source: Subject[Any], op: Any) -> tuple[list[Any], list[Any]]:
    out: list[Any] = []
    ends: list[Any] = []
    source.pipe(op).subscribe(out.append, ends.append, lambda: ends.append("completed"))
    return out, ends


def test_a_cancelled_turns_late_completion_does_not_start_the_next_turn() -> None:
    turns = Deaf()
    source: Subject[Any] = Subject()
    _out, ends = collect(source, one_turn_at_a_time(turns))
    source.on_next("a")
    source.on_next(Interrupt())  # cancels a
    source.on_next("b")  # b's turn starts
    source.on_next("c")  # waits for b
    turns.observers["a"].on_completed()  # a, cancelled, completes late
    assert "c" not in turns.observers  # c still waits for b
    turns.observers["b"].on_completed()
    assert "c" in turns.observers
    assert ends == []


def test_a_cancelled_turns_late_error_does_not_fail_the_stream() -> None:
    turns = Deaf()
    source: Subject[Any] = Subject()
    out, ends = collect(source, one_turn_at_a_time(turns))
    source.on_next("a")
    source.on_next(Interrupt())
    turns.observers["a"].on_error(RuntimeError("late"))
    assert ends == []
    source.on_next("b")
    turns.observers["b"].on_next("b1")
    turns.observers["b"].on_completed()
    source.on_completed()
    assert ends == ["completed"]
    assert out[-1] == "b1"


def test_a_live_turns_error_fails_the_stream_once() -> None:
    turns = Deaf()
    source: Subject[Any] = Subject()
    _out, ends = collect(source, one_turn_at_a_time(turns))
    source.on_next("a")
    boom = RuntimeError("boom")
    turns.observers["a"].on_error(boom)
    turns.observers["a"].on_error(RuntimeError("again"))
    source.on_error(RuntimeError("input too"))
    assert ends == [boom]


def test_on_cancel_is_called_only_with_a_turn_in_flight() -> None:
    cancelled: list[Any] = []
    turns = Deaf()
    source: Subject[Any] = Subject()
    out, _ends = collect(
        source, one_turn_at_a_time(turns, on_cancel=cancelled.append, is_turn=lambda x: isinstance(x, str))
    )
    source.on_next(Interrupt())  # nothing in flight
    assert cancelled == []
    source.on_next("a")
    source.on_next(Interrupt())
    assert cancelled == ["a"]
    source.on_next(Interrupt())  # a was already cancelled
    assert cancelled == ["a"]
    assert sum(isinstance(x, Interrupt) for x in out) == 3


def test_waiting_inputs_survive_a_cancel_without_drop_waiting() -> None:
    turns = Deaf()
    source: Subject[Any] = Subject()
    _out, _ends = collect(source, one_turn_at_a_time(turns, is_turn=lambda x: isinstance(x, str)))
    source.on_next("a")
    source.on_next("b")
    source.on_next(Interrupt())
    assert "b" in turns.observers  # b was not dropped: it runs now


def test_exactly_max_pending_may_wait_one_more_fails() -> None:
    source: Subject[Any] = Subject()
    turns = Deaf()
    _out, ends = collect(source, one_turn_at_a_time(turns, max_pending=2))
    source.on_next("a")  # in flight
    source.on_next("b")
    source.on_next("c")  # two waiting: at the bound
    source.on_next(EndOfTurn())  # a control does not count
    assert ends == []
    source.on_next("d")
    assert len(ends) == 1 and isinstance(ends[0], BufferOverflowError)
    source.on_next("e")  # nothing after the failure
    assert "e" not in turns.observers


def test_options() -> None:
    assert MAX_PENDING == 10_000
    one_turn_at_a_time(lambda x: reactivex.empty(), max_pending=1)
    with pytest.raises(ConfigError, match=r"^one_turn_at_a_time needs max_pending >= 1, not 0$"):
        one_turn_at_a_time(lambda x: reactivex.empty(), max_pending=0)


def test_without_cancel_on_nothing_cancels() -> None:
    turns = Deaf()
    source: Subject[Any] = Subject()
    _out, _ends = collect(source, one_turn_at_a_time(turns, cancel_on=None, is_turn=lambda x: isinstance(x, str)))
    source.on_next("a")
    source.on_next(Interrupt())
    source.on_next("b")
    assert "b" not in turns.observers  # a still runs
    turns.observers["a"].on_completed()
    assert "b" in turns.observers


def test_the_scheduler_reaches_the_input_and_the_turns() -> None:
    from reactivex.testing import TestScheduler

    sch = TestScheduler()
    seen: list[Any] = []

    def turn(x: Any) -> Any:
        def subscribe(observer: Any, scheduler: Any = None) -> Any:
            seen.append(("turn", scheduler))
            observer.on_completed()
            return Disposable()

        return reactivex.create(subscribe)

    def source(observer: Any, scheduler: Any = None) -> Any:
        seen.append(("input", scheduler))
        observer.on_next("a")
        return Disposable()

    reactivex.create(source).pipe(one_turn_at_a_time(turn)).subscribe(scheduler=sch)
    assert seen == [("input", sch), ("turn", sch)]


def test_disposing_from_inside_a_drain_loop_starts_no_more_turns() -> None:
    first: Subject[Any] = Subject()
    started: list[Any] = []

    def turn(x: Any) -> Any:
        started.append(x)
        return first if x == "a" else reactivex.of(x + "1")

    source: Subject[Any] = Subject()
    subscription: list[Any] = []

    def on_next(value: Any) -> None:
        if value == "b1":
            subscription[0].dispose()

    subscription.append(source.pipe(one_turn_at_a_time(turn)).subscribe(on_next))
    for x in ("a", "b", "c"):
        source.on_next(x)
    first.on_completed()  # the drain loop runs b, whose output disposes everything
    assert started == ["a", "b"]


def test_a_turn_that_cannot_start_stops_the_drain_loop() -> None:
    first: Subject[Any] = Subject()
    started: list[Any] = []

    def turn(x: Any) -> Any:
        started.append(x)
        if x == "b":
            raise ValueError("no turn for b")
        return first if x == "a" else reactivex.of(x)

    source: Subject[Any] = Subject()
    errors: list[Any] = []
    source.pipe(one_turn_at_a_time(turn)).subscribe(on_error=errors.append)
    for x in ("a", "b", "c"):
        source.on_next(x)
    first.on_completed()
    assert started == ["a", "b"]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def reentrant(turn_a: Any, **options: Any) -> tuple[Subject[Any], list[Any], list[Any], list[Any]]:
    """A graph whose consumer interrupts on the turn's first output ("a1"), while the turn still subscribes."""
    source: Subject[Any] = Subject()
    cancelled: list[Any] = []
    out: list[Any] = []
    ends: list[Any] = []

    def turn(x: Any) -> Any:
        return turn_a if x == "a" else reactivex.of(f"{x}!")

    def on_next(value: Any) -> None:
        out.append(value)
        if value == "a1":  # e.g. a barge-in detected while the first words play
            source.on_next(Interrupt())

    op = one_turn_at_a_time(turn, on_cancel=cancelled.append, is_turn=lambda x: isinstance(x, str), **options)
    source.pipe(op).subscribe(on_next, ends.append, lambda: ends.append("completed"))
    return source, out, ends, cancelled


def test_a_turn_cancelled_by_its_own_output_is_disposed_and_says_nothing_more() -> None:
    late: Subject[Any] = Subject()
    source, out, ends, cancelled = reentrant(reactivex.concat(reactivex.of("a1"), late))
    source.on_next("a")
    assert cancelled == ["a"]
    assert late.observers == []  # disposed, though its subscribe had not returned when it was cancelled
    late.on_next("a2")
    late.on_error(RuntimeError("late"))
    assert ends == []
    source.on_next("b")
    source.on_completed()
    assert out == ["a1", Interrupt(), "b!"]
    assert ends == ["completed"]


def test_a_turn_cancelled_by_its_own_output_may_fail_at_once_unheard() -> None:
    source, out, ends, cancelled = reentrant(reactivex.concat(reactivex.of("a1"), reactivex.throw(RuntimeError("x"))))
    source.on_next("a")
    assert cancelled == ["a"]
    assert ends == []  # its error came after its cancel: ignored
    source.on_next("b")
    assert out == ["a1", Interrupt(), "b!"]
