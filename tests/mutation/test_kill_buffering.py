"""Pins down rxkit.buffering where mutation testing found it loose (issue 18).

The control count after poll() and drain(), exact bounds (data and
controls), the wait policy with controls queued, and when waiting producers
wake.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rxkit.buffering import BoundedBuffer, OverflowPolicy
from rxkit.elements import EndOfStream, EndOfTurn, Interrupt
from rxkit.errors import BufferOverflowError


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_poll_of_a_control_keeps_the_data_count_right() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2)
    b.offer(EndOfTurn())
    b.offer("a")
    b.offer(EndOfTurn())
    assert (b.data_count, len(b)) == (1, 3)
    assert isinstance(b.poll()[1], EndOfTurn)
    assert (b.data_count, b.full, len(b)) == (1, False, 2)
    b.offer("b")
    assert b.full  # two data elements queued: a control taken out does not make room for a third
    assert b.poll() == (True, "a")
    assert b.data_count == 1
    assert isinstance(b.poll()[1], EndOfTurn)
    assert (b.data_count, b.full) == (1, False)
    assert b.poll() == (True, "b")
    assert (b.data_count, len(b)) == (0, 0)
    assert b.poll() == (False, None)


def test_polled_controls_free_room_for_drop_policies_to_count_right() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1, "drop_newest")
    b.offer(EndOfTurn())
    b.offer(EndOfTurn())
    b.poll()
    b.poll()
    assert b.offer("a") is True  # two controls in and out: the data slot is free
    assert b.offer("b") is False
    assert b.dropped == 1


def test_drain_resets_the_control_count() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2, "error")
    eot = EndOfTurn()
    b.offer(eot)
    b.offer("a")
    assert b.drain() == [eot, "a"]
    assert (b.data_count, b.full, len(b)) == (0, False, 0)
    b.offer("x")
    b.offer("y")  # room for maxsize again: a stale control count would raise here
    assert b.full
    with pytest.raises(BufferOverflowError, match=r"buffer full \(2 elements\) with overflow policy 'error'"):
        b.offer("z")


def test_drain_returns_urgent_first_then_in_order() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(3)
    eot, stop, intr = EndOfTurn(), EndOfStream(), Interrupt()
    for x in ("a", eot, intr, "b", stop):
        b.offer(x)
    out = b.drain()
    assert [type(x) for x in out] == [Interrupt, str, EndOfTurn, str, EndOfStream]
    assert out[0] is intr and out[2] is eot and out[1:4:2] == ["a", "b"]
    assert b.drain() == []


def test_full_exactly_at_maxsize() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(2, "drop_newest")
    b.offer(1)
    assert not b.full
    b.offer(2)
    assert b.full
    assert b.offer(3) is False
    assert b.drain() == [1, 2]


def test_drop_oldest_drops_only_the_oldest_data_behind_controls() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2)
    eot = EndOfTurn()
    for x in (eot, "a", "b", "c"):
        b.offer(x)
    assert b.dropped == 1
    assert b.drain() == [eot, "b", "c"]
    b.offer("d")
    b.offer("e")
    b.offer("f")  # no controls now: plain popleft
    assert (b.drain(), b.dropped) == (["e", "f"], 2)


def test_control_bound_is_maxsize_when_larger_than_1024() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1100)
    for _ in range(1100):
        b.offer(EndOfTurn())
    with pytest.raises(BufferOverflowError, match="more than 1100 control elements queued"):
        b.offer(EndOfTurn())


def test_urgent_controls_count_toward_the_control_bound() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1)
    for _ in range(1023):
        b.offer(Interrupt())
    b.offer(EndOfTurn())
    with pytest.raises(BufferOverflowError, match="more than 1024 control elements queued"):
        b.offer(Interrupt())
    b.poll()  # an urgent one out: room for one more
    b.offer(EndOfTurn())


def test_policy_given_as_enum_or_name() -> None:
    assert BoundedBuffer(1, OverflowPolicy.WAIT).policy is OverflowPolicy.WAIT
    assert BoundedBuffer(1, "drop_newest").policy is OverflowPolicy.DROP_NEWEST
    assert BoundedBuffer(1).policy is OverflowPolicy.DROP_OLDEST
    assert BoundedBuffer(1).maxsize == 1 and BoundedBuffer(1).dropped == 0


def test_peek_leaves_the_element_in_place() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2)
    assert b.peek() == (False, None)
    b.offer("a")
    assert b.peek() == (True, "a")
    intr = Interrupt()
    b.offer(intr)
    assert b.peek() == (True, intr)
    assert len(b) == 2
    assert list(b) == [intr, "a"]


def test_clear_data_keeps_controls_and_counts() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(3)
    eot = EndOfTurn()
    for x in ("a", eot, "b"):
        b.offer(x)
    assert b.clear_data() == 2
    assert (b.data_count, len(b)) == (0, 1)
    for x in ("c", "d", "e"):
        b.offer(x)
    assert b.dropped == 0
    assert b.drain() == [eot, "c", "d", "e"]


async def test_wait_policy_with_controls_queued_counts_only_data() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2, "wait")
    await b.put(EndOfTurn())
    await b.put(EndOfTurn())
    await b.put("a")
    await b.put("b")  # controls take no data room: no wait
    putter = asyncio.ensure_future(b.put("c"))
    await settle()
    assert not putter.done()
    assert isinstance(b.poll()[1], EndOfTurn)
    await settle()
    assert not putter.done()  # a control out frees no data room
    assert isinstance(b.poll()[1], EndOfTurn)
    assert b.poll() == (True, "a")
    await asyncio.wait_for(putter, 1)
    assert b.drain() == ["b", "c"]


async def test_put_of_a_control_under_wait_never_waits() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1, "wait")
    await b.put("a")
    await asyncio.wait_for(b.put(EndOfTurn()), 1)
    assert len(b) == 2


async def test_put_wakes_a_waiting_getter() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1, "wait")
    getter = asyncio.ensure_future(b.get())
    await settle()
    await b.put("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_a_control_wakes_a_waiting_getter() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(1)
    getter = asyncio.ensure_future(b.get())
    await settle()
    eot = EndOfTurn()
    b.offer(eot)
    assert await asyncio.wait_for(getter, 1) is eot


async def test_get_waits_again_after_being_woken_empty() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2)
    getter = asyncio.ensure_future(b.get())
    await settle()
    b.offer("a")
    assert b.poll() == (True, "a")  # someone else took it first
    await settle()
    assert not getter.done()
    b.offer("b")
    assert await asyncio.wait_for(getter, 1) == "b"


async def test_put_waiter_resumes_as_soon_as_one_slot_frees() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(3, "wait")
    for i in range(3):
        await b.put(i)
    putter = asyncio.ensure_future(b.put(3))
    await settle()
    assert not putter.done()
    b.poll()
    await asyncio.wait_for(putter, 1)
    assert b.drain() == [1, 2, 3]


async def test_drain_and_clear_data_wake_waiting_producers() -> None:
    for empty in ("drain", "clear_data"):
        b: BoundedBuffer[int] = BoundedBuffer(2, "wait")
        await b.put(1)
        await b.put(2)
        putter = asyncio.ensure_future(b.put(3))
        waiter = asyncio.ensure_future(b.wait_for_room())
        await settle()
        assert not putter.done() and not waiter.done()
        getattr(b, empty)()
        await asyncio.wait_for(asyncio.gather(putter, waiter), 1)
        assert b.drain() == [3]


async def test_wait_for_room_with_an_odd_bound_waits_for_floor_half() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(5, "wait")
    for i in range(5):
        b.offer(i)
    waiter = asyncio.ensure_future(b.wait_for_room())
    await settle()
    for _ in range(2):
        b.poll()
        await settle()
        assert not waiter.done()  # 4, then 3 left: above 5 // 2
    b.poll()
    await asyncio.wait_for(waiter, 1)  # 2 left


async def test_wait_for_room_returns_at_once_just_below_full() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(3, "wait")
    b.offer(1)
    b.offer(2)
    await asyncio.wait_for(b.wait_for_room(), 1)
    b.offer(EndOfTurn())  # type: ignore[arg-type]
    await asyncio.wait_for(b.wait_for_room(), 1)  # a control does not make it full


async def test_a_put_waiter_and_a_room_waiter_each_wake_at_their_level() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(4, "wait")
    for i in range(4):
        await b.put(i)
    room = asyncio.ensure_future(b.wait_for_room())  # wants 2 or fewer
    putter = asyncio.ensure_future(b.put(4))  # wants 3 or fewer
    await settle()
    b.poll()  # 3 left
    await settle()
    assert putter.done() and not room.done()
    b.poll()
    b.poll()  # 2 left (4 came in)
    await asyncio.wait_for(room, 1)


def test_the_wait_policy_overflow_message_says_what_to_do() -> None:
    b: BoundedBuffer[int] = BoundedBuffer(1, "wait")
    b.offer(1)
    with pytest.raises(BufferOverflowError) as caught:
        b.offer(2)
    assert str(caught.value) == (
        "buffer full (1 elements) with overflow policy 'wait', and the producer pushed without waiting: only "
        "sources that honour the backpressure gate can wait (rxkit.scheduling.from_async_iterable); use a drop "
        "policy or a larger buffer"
    )


async def test_a_waiting_put_wakes_when_data_leaves_even_with_controls_queued_behind() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(2, "wait")
    await b.put("a")
    await b.put("b")
    await b.put(EndOfTurn())
    putter = asyncio.ensure_future(b.put("c"))
    await settle()
    assert not putter.done()
    assert b.poll() == (True, "a")  # one data slot free; the queued control does not count
    await asyncio.wait_for(putter, 1)


async def test_wait_for_room_counts_only_data_with_controls_queued() -> None:
    b: BoundedBuffer[Any] = BoundedBuffer(4, "wait")
    for x in (1, 2, 3, 4, EndOfTurn()):
        b.offer(x)
    waiter = asyncio.ensure_future(b.wait_for_room())
    await settle()
    b.poll()
    b.poll()  # 2 data left (half of 4), and one control
    await asyncio.wait_for(waiter, 1)
