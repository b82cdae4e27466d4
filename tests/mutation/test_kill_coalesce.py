"""Pins down rxkit.operators.coalesce where mutation testing found it loose (issue 18).

count=1, the 4096-part cap, one-sided stage names, exact error messages, and
the window timer restarted per batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex.disposable import Disposable
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxkit.elements import TextDelta
from rxkit.errors import ConfigError
from rxkit.operators import coalesce
from rxkit.testing import run_virtual


def test_count_one_passes_every_delta_as_is_at_once() -> None:
    a, b = TextDelta("a"), TextDelta("b")
    run = run_virtual(coalesce(window=5.0, count=1), [(1.0, a), (2.0, b)], complete_at=3.0)
    assert run.timeline() == [(1.0, a), (2.0, b)]
    assert run.values[0] is a and run.values[1] is b


def test_a_window_alone_caps_a_batch_at_4096_deltas() -> None:
    run = run_virtual(coalesce(window=10.0), [(1.0, TextDelta("x"))] * 4097, complete_at=20.0)
    assert [(t, len(v.text)) for t, v in run.timeline()] == [(1.0, 4096), (11.0, 1)]


def test_a_large_count_is_capped_at_4096_too() -> None:
    run = run_virtual(coalesce(count=10_000), [(1.0, TextDelta("x"))] * 4097, complete_at=2.0)
    assert [(t, len(v.text)) for t, v in run.timeline()] == [(1.0, 4096), (2.0, 1)]


def test_a_count_below_the_cap_is_exact() -> None:
    run = run_virtual(coalesce(count=4095), [(1.0, TextDelta("x"))] * 4096, complete_at=2.0)
    assert [(t, len(v.text)) for t, v in run.timeline()] == [(1.0, 4095), (2.0, 1)]


def test_the_window_starts_with_each_batch_not_each_delta() -> None:
    events = [(0.0, TextDelta("a")), (0.6, TextDelta("b")), (1.5, TextDelta("c")), (2.0, TextDelta("d"))]
    run = run_virtual(coalesce(window=1.0), events, complete_at=5.0)
    assert [(t, v.text) for t, v in run.timeline()] == [(1.0, "ab"), (2.5, "cd")]


def test_stage_names_with_one_argument() -> None:
    assert coalesce(window=0.5).name == "coalesce(window=0.5)"
    assert coalesce(count=3).name == "coalesce(count=3)"


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"^coalesce needs a window \(seconds\) or a count, or both$"):
        coalesce()
    with pytest.raises(ConfigError, match=r"^coalesce window must be a positive number of seconds, not -1$"):
        coalesce(window=-1)
    with pytest.raises(ConfigError, match=r"^coalesce count must be at least 1, not 0$"):
        coalesce(count=0)
    with pytest.raises(ConfigError, match="positive"):
        coalesce(window=float("nan"))
    coalesce(window=1e-9)
    coalesce(count=1)


def test_count_only_ignores_the_time_between_deltas() -> None:
    events = [(0.0, TextDelta("a")), (50.0, TextDelta("b")), (100.0, TextDelta("c"))]
    run = run_virtual(coalesce(count=2), events, complete_at=200.0)
    assert [(t, v.text) for t, v in run.timeline()] == [(50.0, "ab"), (200.0, "c")]


class RecordingScheduler(TestScheduler):
    """A virtual-time scheduler that keeps what each timer returned, to see whether it was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[Any] = []

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> Any:
        timer = super().schedule_relative(duetime, action, state)
        self.timers.append(timer)
        return timer


def test_dispose_cancels_the_pending_timer_itself() -> None:
    sch = RecordingScheduler()
    subject: Subject[Any] = Subject()
    sub = subject.pipe(coalesce(window=1.0, scheduler=sch)).subscribe(lambda _: None)
    subject.on_next(TextDelta("a"))
    assert len(sch.timers) == 1 and not sch.timers[0].is_disposed
    sub.dispose()
    assert sch.timers[0].is_disposed


def test_its_own_scheduler_wins_over_the_subscribe_time_one() -> None:
    own, other = TestScheduler(), TestScheduler()
    subject: Subject[Any] = Subject()
    got: list[str] = []
    subject.pipe(coalesce(window=1.0, scheduler=own)).subscribe(lambda d: got.append(d.text), scheduler=other)
    subject.on_next(TextDelta("a"))
    other.advance_to(5.0)
    assert got == []
    own.advance_to(1.0)
    assert got == ["a"]


def test_the_subscribe_time_scheduler_is_passed_upstream() -> None:
    seen: list[Any] = []

    def source(observer: Any, scheduler: Any = None) -> Any:
        seen.append(scheduler)
        return Disposable()

    sch = TestScheduler()
    reactivex.create(source).pipe(coalesce(count=2)).subscribe(scheduler=sch)
    assert seen == [sch]
