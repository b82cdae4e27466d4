"""Pins down rxkit.operators.coalesce where mutation testing found it loose (issue 18).

count=1, the 4096-part cap, one-sided stage names, exact error messages, and
the window timer restarted per batch.
"""

from __future__ import annotations

import pytest

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
