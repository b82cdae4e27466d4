"""The save_state stage: a finished turn is stored before its EndOfTurn goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxkit.elements import EndOfStream, EndOfTurn, TextDelta
from rxkit.errors import ProviderError, StateError
from rxkit.operators import save_state
from rxkit.state import MemoryStore
from rxkit.telemetry.events import EventBus, StateSaved
from rxkit.testing import ano_leaks, run_virtual
from rxkit.turn import Turn
from rxkit.types import ChatResponse, Message


def finished(text: str, answer: str, history: list[Message] | None = None, session: str = "s") -> Turn:
    t = Turn(Message.user(text), session=session, history=history)
    t.response = ChatResponse(message=Message.assistant(answer))
    return t


class Probe:
    """Collects output; on EndOfTurn records what the store held at that moment."""

    def __init__(self, store: MemoryStore, session: str = "s") -> None:
        self.store, self.session = store, session
        self.values: list[Any] = []
        self.stored_at_end: list[int] = []
        self.error: Exception | None = None
        self.done = asyncio.get_running_loop().create_future()

    def on_next(self, v: Any) -> None:
        if isinstance(v, EndOfTurn):
            self.stored_at_end.append(len(self.store._history.get(self.session, [])))
        self.values.append(v)

    def on_error(self, e: Exception) -> None:
        self.error = e
        self.done.set_result(None)

    def on_completed(self) -> None:
        self.done.set_result(None)


def sub(source: Any, stage: Any, probe: Probe) -> Any:
    loop = asyncio.get_running_loop()
    return source.pipe(stage).subscribe(
        probe.on_next, probe.on_error, probe.on_completed, scheduler=AsyncIOScheduler(loop)
    )


async def test_saves_the_turn_then_passes_the_end_of_turn_on(bus: EventBus) -> None:
    store = MemoryStore()
    t1 = finished("hi", "hello")
    probe = Probe(store)
    sub(reactivex.of(TextDelta("hello"), EndOfTurn(t1.response, t1), EndOfStream()), save_state(store, bus=bus), probe)
    await probe.done
    assert [type(v).__name__ for v in probe.values] == ["TextDelta", "EndOfTurn", "EndOfStream"]
    assert probe.stored_at_end == [2]  # already stored when the EndOfTurn arrived downstream
    assert [m.text for m in await store.load("s")] == ["hi", "hello"]
    assert [(e.session, e.messages) for e in bus.events(StateSaved)] == [("s", 2)]


async def test_two_turns_in_a_row_and_tool_messages() -> None:
    store = MemoryStore()
    t1 = finished("one", "1")
    t1.new_messages = [Message.tool("c", "42", name="f")]
    t2 = finished("two", "2", history=[Message.user("one"), Message.tool("c", "42"), Message.assistant("1")])
    probe = Probe(store)
    sub(reactivex.of(EndOfTurn(t1.response, t1), TextDelta("x"), EndOfTurn(t2.response, t2)), save_state(store), probe)
    await probe.done
    assert probe.error is None and probe.stored_at_end == [3, 5]
    assert [type(v).__name__ for v in probe.values] == ["EndOfTurn", "TextDelta", "EndOfTurn"]
    assert [m.role for m in await store.load("s")] == ["user", "tool", "assistant", "user", "assistant"]


async def test_stale_history_is_a_state_error_and_the_end_of_turn_is_withheld() -> None:
    store = MemoryStore()
    await store.append_turn("s", [Message.user("someone else"), Message.assistant("wrote")])
    t = finished("mine", "answer", history=[])  # loaded before the other writer
    probe = Probe(store)
    sub(reactivex.of(EndOfTurn(t.response, t)), save_state(store), probe)
    await probe.done
    assert isinstance(probe.error, StateError) and "expected 0" in str(probe.error)
    assert probe.values == []
    assert len(await store.load("s")) == 2


async def test_an_error_before_the_end_of_turn_saves_nothing() -> None:
    store = MemoryStore()
    probe = Probe(store)
    failure = ProviderError("dropped")
    sub(reactivex.concat(reactivex.of(TextDelta("par")), reactivex.throw(failure)), save_state(store), probe)
    await probe.done
    assert probe.error is failure and await store.sessions() == []


async def test_an_error_after_a_finished_turn_waits_for_its_save() -> None:
    store = MemoryStore()
    t = finished("q", "a")
    probe = Probe(store)
    failure = ProviderError("next turn failed")
    source = reactivex.concat(reactivex.of(EndOfTurn(t.response, t)), reactivex.throw(failure))
    sub(source, save_state(store), probe)
    await probe.done
    assert probe.error is failure and probe.stored_at_end == [2]
    assert len(await store.load("s")) == 2


async def test_dispose_while_saving_saves_nothing_and_leaks_nothing() -> None:
    store = MemoryStore()
    t = finished("q", "a")
    async with ano_leaks():
        probe = Probe(store)
        subscription = sub(reactivex.of(EndOfTurn(t.response, t)), save_state(store), probe)
        subscription.dispose()  # before the save task got to run
        await asyncio.sleep(0.01)
    assert probe.values == [] and await store.sessions() == []


async def test_end_of_turn_without_a_turn_and_no_store_pass_through() -> None:
    store = MemoryStore()
    probe = Probe(store)
    sub(reactivex.of(EndOfTurn()), save_state(store), probe)
    await probe.done
    assert probe.values == [EndOfTurn()] and await store.sessions() == []
    t = finished("q", "a")
    run = run_virtual(save_state(None), [EndOfTurn(t.response, t)], complete_at=1)  # no store: no loop needed
    assert run.values == [EndOfTurn(t.response, t)] and run.completed_at == 1


async def test_elements_waiting_behind_a_save_are_bounded() -> None:
    store = MemoryStore()
    t = finished("q", "a")
    probe = Probe(store)
    inputs: Subject[Any] = Subject()
    sub(inputs, save_state(store, max_pending=2), probe)
    inputs.on_next(EndOfTurn(t.response, t))
    for i in range(3):
        inputs.on_next(TextDelta(str(i)))
    await probe.done
    assert type(probe.error).__name__ == "BufferOverflowError"
