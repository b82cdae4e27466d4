"""BoundedBuffer: policies, controls, waiting producers and consumers, the backpressure gate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxkit.buffering import BoundedBuffer, OverflowPolicy, backpressure, current_backpressure
from rxkit.elements import EndOfStream, EndOfTurn, Interrupt
from rxkit.errors import BufferOverflowError, ConfigError


def test_fifo_and_sizes() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(3)
    assert b.offer(1) and b.offer(2)
    assert len(b) == 2 and b.data_count == 2 and not b.full
    b.offer(3)
    assert b.full
    assert b.poll() == (True, 1)
    assert list(b) == [2, 3]
    assert b.drain() == [2, 3]
    assert b.poll() == (False, None)


def test_drop_oldest_skips_controls_at_the_head() -> None:
    eot = EndOfTurn()
    b: BoundedBuffer[Any] = BoundedBuffer(2, "drop_oldest")
    for x in (eot, "d1", "d2", "d3"):
        b.offer(x)
    assert b.drain() == [eot, "d2", "d3"]
    assert b.dropped == 1


def test_drop_newest_reports_the_drop() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, OverflowPolicy.DROP_NEWEST)
    assert b.offer(1) is True
    assert b.offer(2) is False
    assert b.drain() == [1] and b.dropped == 1


def test_error_policy_raises() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, "error")
    b.offer(1)
    with pytest.raises(BufferOverflowError, match="1 elements"):
        b.offer(2)
    assert b.drain() == [1]


def test_wait_policy_rejects_a_push_that_cannot_wait() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, "wait")
    b.offer(1)
    with pytest.raises(BufferOverflowError, match="pushed without waiting"):
        b.offer(2)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "error", "wait"])
def test_controls_are_never_dropped_and_do_not_count_as_data(policy: str) -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1, policy)
    b.offer("d")
    controls = [EndOfTurn(), EndOfStream(), EndOfTurn()]
    for c in controls:
        assert b.offer(c) is True
    assert b.data_count == 1 and len(b) == 4
    assert b.drain() == ["d", *controls]


def test_urgent_controls_pass_ahead_of_data() -> None:
    stop = Interrupt("barge-in")
    b: BoundedBuffer[Any] = BoundedBuffer(4)
    for x in ("a", EndOfTurn(), "b", stop):
        b.offer(x)
    assert b.poll() == (True, stop)
    assert list(b) == ["a", EndOfTurn(), "b"]


def test_clear_data_keeps_controls() -> None:
    stop, eot = Interrupt(), EndOfTurn()
    b: BoundedBuffer[Any] = BoundedBuffer(4)
    for x in ("a", eot, "b", stop):
        b.offer(x)
    assert b.clear_data() == 2
    assert b.drain() == [stop, eot]


def test_a_flood_of_controls_is_a_bug() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2)
    for _ in range(1024):
        b.offer(EndOfTurn())
    with pytest.raises(BufferOverflowError, match="control elements"):
        b.offer(EndOfTurn())


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        BoundedBuffer(0)
    with pytest.raises(ConfigError, match="drop_oldest, drop_newest, error, wait"):
        BoundedBuffer(1, "lossy")


async def test_put_waits_for_room_under_wait() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, "wait")
    await b.put(1)
    putter = asyncio.ensure_future(b.put(2))
    await asyncio.sleep(0)
    assert not putter.done()  # full: the producer waits
    assert b.poll() == (True, 1)
    await asyncio.wait_for(putter, 1)
    assert b.drain() == [2]


async def test_put_under_other_policies_does_not_wait() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, "drop_newest")
    await b.put(1)
    await b.put(2)
    assert b.drain() == [1] and b.dropped == 1


async def test_get_waits_for_an_item() -> None:
    b: BoundedBuffer[str] = BoundedBuffer(2)
    getter = asyncio.ensure_future(b.get())
    await asyncio.sleep(0)
    assert not getter.done()
    b.offer("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_wait_for_room_resumes_at_half_full() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(4, "wait")
    await b.wait_for_room()  # not full: returns at once
    for i in range(4):
        b.offer(i)
    waiter = asyncio.ensure_future(b.wait_for_room())
    await asyncio.sleep(0)
    b.poll()  # 3 left: still above half
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiter.done()
    b.poll()  # 2 left: half
    await asyncio.wait_for(waiter, 1)


def test_backpressure_gate_is_scoped() -> None:
    outer: BoundedBuffer[int] = BoundedBuffer(1)
    inner: BoundedBuffer[int] = BoundedBuffer(1)
    assert current_backpressure() is None
    with backpressure(outer):
        assert current_backpressure() is outer
        with backpressure(inner):
            assert current_backpressure() is inner
        with backpressure(None):
            assert current_backpressure() is None
        assert current_backpressure() is outer
    assert current_backpressure() is None


operations = st.lists(
    st.one_of(
        st.tuples(st.just("data"), st.integers()),
        st.tuples(st.just("control"), st.booleans()),
        st.tuples(st.just("poll"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, database=None)
@given(ops=operations, maxsize=st.integers(1, 5), policy=st.sampled_from(["drop_oldest", "drop_newest"]))
def test_invariants_under_any_sequence(ops: list[tuple[str, Any]], maxsize: int, policy: str) -> None:
    """Bound holds, controls all arrive, data keeps its order, and every data element is accounted for."""
    b: BoundedBuffer[Any] = BoundedBuffer(maxsize, policy)
    offered_data: list[Any] = []
    offered_controls: list[Any] = []
    out: list[Any] = []
    for op, arg in ops:
        if op == "data":
            offered_data.append(arg)
            b.offer(arg)
        elif op == "control":
            c = Interrupt() if arg else EndOfTurn()
            offered_controls.append(c)
            b.offer(c)
        else:
            ok, item = b.poll()
            if ok:
                out.append(item)
        assert b.data_count <= maxsize
    out += b.drain()
    got_controls = [x for x in out if isinstance(x, (EndOfTurn, Interrupt))]
    got_data = [x for x in out if not isinstance(x, (EndOfTurn, Interrupt))]
    assert sorted(map(id, got_controls)) == sorted(map(id, offered_controls))
    assert len(got_data) + b.dropped == len(offered_data)
    it = iter(offered_data)  # the data that came out is a subsequence of what went in
    assert all(any(x == y for y in it) for x in got_data)
