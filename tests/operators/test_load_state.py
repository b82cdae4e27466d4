"""The load_state stage: a Turn per input, history loaded when the turn starts."""

from __future__ import annotations

import asyncio
from typing import Any

import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.elements import EndOfStream, MessageElement
from rxkit.errors import GraphError, StateError
from rxkit.operators import load_state
from rxkit.state import MemoryStore
from rxkit.telemetry.events import EventBus, StateLoaded
from rxkit.testing import ano_leaks, run_virtual
from rxkit.turn import Turn
from rxkit.types import Message


async def until(condition: Any) -> None:
    """Let the loop run until ``condition()`` holds (a few loop turns at most here)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _collect(stage: Any, inputs: list[Any]) -> list[Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    out: list[Any] = []
    reactivex.from_iterable(inputs).pipe(stage).subscribe(
        out.append, done.set_exception, lambda: done.set_result(out), scheduler=AsyncIOScheduler(loop)
    )
    return await done


async def test_each_input_becomes_a_turn_with_the_stored_history(bus: EventBus) -> None:
    store = MemoryStore()
    await store.append_turn("alice", [Message.user("earlier"), Message.assistant("noted")])
    out = await _collect(
        load_state(store, "alice", variables={"name": "Alice"}, bus=bus),
        ["plain text", Message.user("a message"), MessageElement(Message.user("an element"))],
    )
    assert [type(t) for t in out] == [Turn, Turn, Turn]
    assert [t.user.text for t in out] == ["plain text", "a message", "an element"]
    assert all(t.session == "alice" and t.variables == {"name": "Alice"} for t in out)
    assert [m.text for m in out[0].history] == ["earlier", "noted"]
    loaded = bus.events(StateLoaded)
    assert [(e.session, e.messages) for e in loaded] == [("alice", 2)] * 3


async def test_history_is_loaded_when_the_turn_starts_not_at_subscribe() -> None:
    store = MemoryStore()
    loop = asyncio.get_running_loop()
    inputs: Subject[Any] = Subject()
    out: list[Turn] = []
    inputs.pipe(load_state(store)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
    inputs.on_next("first")
    await until(lambda: len(out) == 1)
    await store.append_turn("default", [Message.user("first"), Message.assistant("one")])
    inputs.on_next("second")
    await until(lambda: len(out) == 2)
    assert [len(t.history) for t in out] == [0, 2]


async def test_turns_keep_input_order_and_controls_pass_through() -> None:
    out = await _collect(load_state(MemoryStore()), ["a", EndOfStream(), "b"])
    assert [getattr(x, "user", x) for x in out] == [Message.user("a"), EndOfStream(), Message.user("b")]


def test_without_a_store_no_loop_is_needed() -> None:
    run = run_virtual(load_state(session="s"), [(1.0, "hi")], complete_at=2.0)
    [t] = run.values
    assert isinstance(t, Turn) and t.history == [] and t.session == "s"
    assert run.times == [1.0] and run.completed_at == 2.0


def test_bad_input_is_a_graph_error() -> None:
    run = run_virtual(load_state(), [42], complete_at=1)
    assert isinstance(run.error, GraphError) and "int" in str(run.error)


class _BrokenStore(MemoryStore):
    async def load(self, session: str) -> list[Message]:
        raise OSError("disk gone")


async def test_a_failing_store_becomes_a_state_error() -> None:
    try:
        await _collect(load_state(_BrokenStore()), ["hi"])
    except StateError as exc:
        assert "disk gone" in str(exc)
    else:
        raise AssertionError("expected StateError")


class _SlowStore(MemoryStore):
    started = 0

    async def load(self, session: str) -> list[Message]:
        self.started += 1
        await asyncio.sleep(60)
        return []


async def test_dispose_while_loading_cancels_the_load() -> None:
    store = _SlowStore()
    async with ano_leaks():
        loop = asyncio.get_running_loop()
        out: list[Any] = []
        sub = reactivex.of("hi").pipe(load_state(store)).subscribe(out.append, scheduler=AsyncIOScheduler(loop))
        await until(lambda: store.started == 1)
        sub.dispose()
    assert out == []
