"""coalesce: batching text deltas by count and by time, on virtual time."""

from __future__ import annotations

import pytest
import reactivex
import reactivex.operators as ops

from rxkit.elements import EndOfTurn, Interrupt, TextDelta
from rxkit.errors import ConfigError
from rxkit.graph.stage import StageKind
from rxkit.operators import coalesce
from rxkit.testing import run_virtual


def deltas(*pairs: tuple[float, str]) -> list[tuple[float, TextDelta]]:
    return [(t, TextDelta(s)) for t, s in pairs]


def texts(values: list[object]) -> list[object]:
    return [v.text if isinstance(v, TextDelta) else v for v in values]


def test_count_batches() -> None:
    run = run_virtual(coalesce(count=3), deltas((1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")), complete_at=6.0)
    assert texts(run.values) == ["abc", "de"]
    assert run.times == [3.0, 6.0]  # the remainder flushes on completion
    assert run.completed_at == 6.0
    assert run.subscription == (0.0, 6.0)


def test_window_flushes_on_the_scheduler() -> None:
    events = deltas((0.0, "a"), (0.5, "b"), (0.9, "c"), (1.2, "d"), (3.0, "e"))
    run = run_virtual(coalesce(window=1.0), events, complete_at=3.5)
    assert run.timeline() == [(1.0, TextDelta("abc")), (2.2, TextDelta("d")), (3.5, TextDelta("e"))]
    assert run.subscription == (0.0, 3.5)


def test_count_before_window_cancels_the_timer() -> None:
    events = deltas((0.0, "a"), (0.1, "b"), (0.5, "c"))
    run = run_virtual(coalesce(window=1.0, count=2), events, complete_at=5.0)
    # "ab" by count at 0.1; "c" starts a new window at 0.5 and flushes at 1.5. No empty
    # batch at 1.0 from the first window's timer.
    assert run.timeline() == [(0.1, TextDelta("ab")), (1.5, TextDelta("c"))]


def test_other_elements_flush_then_pass_in_order() -> None:
    eot, stop = EndOfTurn(), Interrupt()
    events = [(1.0, TextDelta("a")), (1.0, TextDelta("b")), (1.0, eot), (2.0, TextDelta("c")), (2.0, stop), (2.0, 7)]
    run = run_virtual(coalesce(window=10.0), events, complete_at=3.0)
    assert run.values == [TextDelta("ab"), eot, TextDelta("c"), stop, 7]
    assert run.times == [1.0, 1.0, 2.0, 2.0, 2.0]


def test_error_flushes_the_batch_first() -> None:
    boom = RuntimeError("stream broke")
    run = run_virtual(coalesce(window=5.0), deltas((1, "par"), (2, "tial")), error_at=(3.0, boom))
    assert run.timeline() == [(3.0, TextDelta("partial"))]
    assert run.error is boom


def test_dispose_cancels_the_timer() -> None:
    run = run_virtual(coalesce(window=1.0), deltas((0.0, "a")), dispose_at=0.5)
    assert run.values == []  # the timer due at 1.0 was cancelled with the subscription
    assert run.subscription == (0.0, 0.5)


def test_a_lone_delta_is_passed_as_is() -> None:
    only = TextDelta("x")
    run = run_virtual(coalesce(window=1.0), [(0.0, only)], complete_at=2.0)
    assert run.values[0] is only


def test_subclasses_of_text_delta_are_not_joined() -> None:
    class Tagged(TextDelta):
        __slots__ = ("tag",)

        def __init__(self, text: str, tag: str) -> None:
            super().__init__(text)
            self.tag = tag

    tagged = Tagged("z", "t")
    run = run_virtual(coalesce(count=5), [TextDelta("a"), tagged, TextDelta("b")], complete_at=1.0)
    assert run.values == [TextDelta("a"), tagged, TextDelta("b")]


def test_count_only_needs_no_scheduler() -> None:
    out = reactivex.of(*map(TextDelta, "abcde")).pipe(coalesce(count=2), ops.map(lambda d: d.text), ops.to_list())
    assert out.run() == ["ab", "cd", "e"]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="window"):
        coalesce()
    with pytest.raises(ConfigError, match="positive"):
        coalesce(window=0)
    with pytest.raises(ConfigError, match="at least 1"):
        coalesce(count=0)


def test_stage_metadata() -> None:
    stage = coalesce(window=0.05, count=10)
    assert stage.name == "coalesce(window=0.05, count=10)"
    assert stage.kind is StageKind.ACCUMULATE
