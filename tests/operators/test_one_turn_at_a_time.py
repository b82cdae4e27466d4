"""one_turn_at_a_time, the turn machine: order, waiting, the bound, cancellation, errors, completion, disposal.

Virtual time (ticks): each turn is a cold observable, so its subscription window shows
exactly when the turn ran and when it was cancelled or disposed.
"""

from __future__ import annotations

import doctest
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.scheduler import ImmediateScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.coldobservable import ColdObservable

import rxkit.operators
from rxkit.elements import EndOfTurn, Interrupt
from rxkit.errors import BufferOverflowError, ConfigError
from rxkit.operators import MAX_PENDING, one_turn_at_a_time
from rxkit.operators import _one_turn_at_a_time as module

on_next, on_completed, on_error, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
    ReactiveTest.subscribe,
)


def answers(scheduler: TestScheduler, *names: str) -> dict[str, ColdObservable]:
    """A turn per name: ``<name>1`` 10 ticks in, ``<name>2`` at 20, done at 30."""
    return {
        n: scheduler.create_cold_observable(on_next(10, f"{n}1"), on_next(20, f"{n}2"), on_completed(30)) for n in names
    }


def turns_of(turns: dict[str, ColdObservable]) -> Any:
    """run_turn: a name's cold turn; anything else (controls) passes through as its own turn."""
    return lambda x: turns[x] if isinstance(x, str) else reactivex.return_value(x)


def test_turns_run_one_after_another_in_order() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(220, "b"), on_completed(230))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns))))
    assert results.messages == [
        on_next(220, "a1"),
        on_next(230, "a2"),
        on_next(250, "b1"),  # b waited for a's end at 240
        on_next(260, "b2"),
        on_completed(270),  # the input ended at 230: the waiting turn still ran
    ]
    assert xs.subscriptions == [subscribe(200, 230)]
    assert turns["a"].subscriptions == [subscribe(210, 240)]
    assert turns["b"].subscriptions == [subscribe(240, 270)]


def test_controls_wait_in_order_and_do_not_count_against_the_bound() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    end = EndOfTurn()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(211, "b"), on_next(212, end), on_completed(213))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), max_pending=1)))
    assert results.messages == [
        on_next(220, "a1"),
        on_next(230, "a2"),
        on_next(250, "b1"),
        on_next(260, "b2"),
        on_next(270, end),
        on_completed(270),
    ]


def test_more_than_max_pending_waiting_fails_the_stream_and_cancels_the_turn() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b", "c", "d")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(211, "b"), on_next(212, "c"), on_next(213, "d"))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), max_pending=2)))
    (failure,) = results.messages
    assert failure.time == 213 and isinstance(failure.value.exception, BufferOverflowError)
    assert xs.subscriptions == [subscribe(200, 213)]
    assert turns["a"].subscriptions == [subscribe(210, 213)]
    assert turns["b"].subscriptions == turns["c"].subscriptions == turns["d"].subscriptions == []


def test_an_urgent_element_cancels_the_turn_in_flight_and_goes_first() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    stop = Interrupt("user")
    cancelled: list[Any] = []
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(215, "b"), on_next(225, stop), on_completed(226))
    results = scheduler.start(
        lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), on_cancel=lambda x: cancelled.append((scheduler.clock, x))))
    )
    assert results.messages == [
        on_next(220, "a1"),  # a2 (due at 230) never comes
        on_next(225, stop),  # ahead of b, which waited
        on_next(235, "b1"),
        on_next(245, "b2"),
        on_completed(255),
    ]
    assert turns["a"].subscriptions == [subscribe(210, 225)]  # disposed the moment the interrupt came
    assert turns["b"].subscriptions == [subscribe(225, 255)]
    assert cancelled == [(225, "a")]


def test_drop_waiting_cancels_the_waiting_turns_too_but_keeps_their_controls() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b", "c")
    stop, end = Interrupt(), EndOfTurn()
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(212, "b"), on_next(213, end), on_next(225, stop), on_next(300, "c")
    )
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), drop_waiting=True)))
    assert results.messages == [on_next(220, "a1"), on_next(225, stop), on_next(225, end), on_next(310, "c1"),
                                on_next(320, "c2")]  # fmt: skip
    assert turns["a"].subscriptions == [subscribe(210, 225)]
    assert turns["b"].subscriptions == []  # dropped while it waited
    assert turns["c"].subscriptions == [subscribe(300, 330)]  # turns after the interrupt run as usual


def is_turn(x: Any) -> bool:
    return isinstance(x, str)


def test_with_is_turn_other_inputs_pass_at_once() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(212, 7), on_next(213, "b"), on_next(215, 8), on_completed(216)
    )
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), is_turn=is_turn)))
    # 7 and 8 pass ahead of the turn in flight
    assert results.messages == [on_next(212, 7), on_next(215, 8), on_next(220, "a1"), on_next(230, "a2"),
                                on_next(250, "b1"), on_next(260, "b2"), on_completed(270)]  # fmt: skip
    assert turns["b"].subscriptions == [subscribe(240, 270)]


def test_with_is_turn_an_urgent_element_cancels_then_passes_and_the_stream_can_end() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a")
    stop = Interrupt()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_completed(212), on_next(215, stop))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), is_turn=is_turn)))
    assert results.messages == [on_next(220, "a1"), on_next(230, "a2"), on_completed(240)]  # the input had ended

    scheduler = TestScheduler()
    turns = answers(scheduler, "a")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(215, stop), on_completed(216))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), is_turn=is_turn)))
    assert results.messages == [on_next(215, stop), on_completed(216)]  # nothing left to run: done at once
    assert turns["a"].subscriptions == [subscribe(210, 215)]


def test_without_cancel_on_an_urgent_element_waits_its_turn_at_the_head() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    stop = Interrupt()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(212, "b"), on_next(215, stop), on_completed(216))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), cancel_on=None)))
    assert results.messages == [on_next(220, "a1"), on_next(230, "a2"), on_next(240, stop), on_next(250, "b1"),
                                on_next(260, "b2"), on_completed(270)]  # fmt: skip
    assert turns["a"].subscriptions == [subscribe(210, 240)]


def test_a_turn_that_fails_fails_the_stream_and_lets_the_input_go() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("the model is down")
    failing = scheduler.create_cold_observable(on_next(5, "x1"), on_error(10, boom))
    turns = {"x": failing, **answers(scheduler, "b")}
    xs = scheduler.create_hot_observable(on_next(210, "x"), on_next(212, "b"))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns))))
    assert results.messages == [on_next(215, "x1"), on_error(220, boom)]
    assert xs.subscriptions == [subscribe(200, 220)]
    assert failing.subscriptions == [subscribe(210, 220)]
    assert turns["b"].subscriptions == []


def test_run_turn_raising_and_the_input_failing_both_fail_the_stream() -> None:
    scheduler = TestScheduler()
    boom = ValueError("bad input")

    def run_turn(x: Any) -> Observable[Any]:
        raise boom

    xs = scheduler.create_hot_observable(on_next(210, "a"))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(run_turn)))
    assert results.messages == [on_error(210, boom)]
    assert xs.subscriptions == [subscribe(200, 210)]

    scheduler = TestScheduler()
    turns = answers(scheduler, "a")
    broken = ConnectionError("the input broke")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_error(215, broken))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns))))
    assert results.messages == [on_error(215, broken)]  # at once: the turn in flight is cancelled
    assert turns["a"].subscriptions == [subscribe(210, 215)]


def test_a_failing_on_cancel_fails_the_stream() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a")
    oops = KeyError("save")

    def on_cancel(x: Any) -> None:
        raise oops

    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(215, Interrupt()))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns), on_cancel=on_cancel)))
    assert results.messages == [on_error(215, oops)]
    assert turns["a"].subscriptions == [subscribe(210, 215)]
    assert xs.subscriptions == [subscribe(200, 215)]


def test_completion_while_a_turn_runs_waits_for_it() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_completed(215))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns))))
    assert results.messages == [on_next(220, "a1"), on_next(230, "a2"), on_completed(240)]
    assert xs.subscriptions == [subscribe(200, 215)]
    assert turns["a"].subscriptions == [subscribe(210, 240)]


def test_disposal_disposes_the_turn_in_flight_and_starts_nothing_more() -> None:
    scheduler = TestScheduler()
    turns = answers(scheduler, "a", "b")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(212, "b"), on_next(300, "b"))
    results = scheduler.start(lambda: xs.pipe(one_turn_at_a_time(turns_of(turns))), disposed=225)
    assert results.messages == [on_next(220, "a1")]
    assert xs.subscriptions == [subscribe(200, 225)]
    assert turns["a"].subscriptions == [subscribe(210, 225)]
    assert turns["b"].subscriptions == []  # the waiting turn never started


def test_synchronous_turns_are_drained_in_a_loop_not_by_recursion() -> None:
    now = ImmediateScheduler()
    first: Subject[Any] = Subject()  # the first turn holds the rest back until it ends
    out: list[Any] = []
    done: list[bool] = []
    answer = one_turn_at_a_time(lambda x: first if x == 0 else reactivex.return_value(x, now), max_pending=5_000)
    reactivex.from_iterable(range(5_000), scheduler=now).pipe(answer).subscribe(
        out.append, lambda e: out.append(e), lambda: done.append(True)
    )
    assert out == [] and not done  # 4,999 inputs wait
    first.on_completed()  # each waiting turn completes as it starts: a recursive drain would overflow the stack
    assert len(out) == 4_999 and out[-1] == 4_999 and done == [True]


def test_bad_bound_fails_when_built_and_the_default_is_max_pending() -> None:
    with pytest.raises(ConfigError, match="max_pending"):
        one_turn_at_a_time(reactivex.return_value, max_pending=0)
    assert MAX_PENDING == 10_000 and "one_turn_at_a_time" in rxkit.operators.__all__


def test_doctests() -> None:
    assert doctest.testmod(module).failed == 0
