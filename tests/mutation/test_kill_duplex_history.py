"""Pins down rxkit.duplex.history: a cut reply's text, and the state store kept up to the history (issue 18).

The stores are rxkit's real ones (MemoryStore, SQLiteStore); a gate in
front of one holds a save mid-way to show what runs while it waits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rxkit.duplex.history import StoreSync, cut_at_word
from rxkit.errors import RxkitError, StateError
from rxkit.state.memory import MemoryStore
from rxkit.state.sqlite import SQLiteStore
from rxkit.types import Message

pytestmark = pytest.mark.timeout(30)


def test_cut_at_word_keeps_whole_words_of_what_was_heard() -> None:
    text = "one two three four"  # 18 characters
    assert cut_at_word(text, 1.0) == text and cut_at_word(text, 1.5) == text
    assert cut_at_word("all of it ", 1.0) == "all of it " and cut_at_word("all of it ", 1.5) == "all of it "
    assert cut_at_word(text, 0.999) == "one two three"
    assert cut_at_word(text, 0.5) == "one two"  # "one two t": the cut word is dropped
    assert cut_at_word(text, 0.55) == "one two"
    assert cut_at_word(text, 7 / 18) == "one two"  # cut right at a space: the word before it is whole
    assert cut_at_word(text, 8 / 18) == "one two"  # "one two ": trailing space dropped
    assert cut_at_word(text, 0.1) == ""  # "o": no whole word heard
    assert cut_at_word(text, 0.0) == "" and cut_at_word(text, -0.5) == ""
    assert cut_at_word("one\ntwo three", 3 / 13) == "one"  # any white space ends a word
    assert cut_at_word("one\ttwo", 4 / 7) == ""  # "one\tt": no space to cut back to
    assert cut_at_word("one   two", 5 / 9) == "one"
    assert cut_at_word("", 0.5) == ""
    assert cut_at_word("a b cd ef", 5 / 9) == "a b"  # back to the last space, not the first


class Gated(MemoryStore):
    """A MemoryStore whose writes wait for ``gate`` (set: no wait) and are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[tuple[str, int | None]] = []

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        self.calls.append(("append", expected_length))
        await self.gate.wait()
        return await super().append_turn(session, messages, expected_length=expected_length)

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        self.calls.append(("replace", expected_length))
        await self.gate.wait()
        await super().replace_last(session, message, expected_length=expected_length)


def syncing(store: Any, history: list[Message]) -> tuple[StoreSync, list[RxkitError]]:
    failures: list[RxkitError] = []
    return StoreSync(store, "s1", lambda: history, failures.append), failures


async def settle(sync: StoreSync) -> None:
    for _ in range(100):
        await asyncio.sleep(0)


async def test_new_messages_are_appended_and_a_cut_last_reply_replaced() -> None:
    store = Gated()
    history = [Message.user("hi"), Message.assistant("hello there")]
    sync, failures = syncing(store, history)
    assert (sync.store, sync.session_id, sync.saved) == (store, "s1", 0)
    sync.save_soon()
    await settle(sync)
    assert await store.load("s1") == history and sync.saved == 2
    history[1] = Message.assistant("hello")
    sync.changed_at(1)
    history.append(Message.user("bye"))
    sync.save_soon()
    await settle(sync)
    assert await store.load("s1") == [Message.user("hi"), Message.assistant("hello"), Message.user("bye")]
    assert store.calls == [("append", 0), ("replace", 2), ("append", 2)] and sync.saved == 3
    assert failures == []


async def test_a_change_to_a_message_before_the_last_saved_one_is_not_replaced() -> None:
    store = Gated()
    history = [Message.user("hi"), Message.assistant("hello")]
    sync, _ = syncing(store, history)
    await sync.sync()
    sync.changed_at(0)  # not the last saved message: the store keeps its own
    await sync.sync()
    sync.changed_at(2)  # not saved yet: appended as new, not replaced
    await sync.sync()
    assert store.calls == [("append", 0)]
    history.append(Message.assistant("more"))
    sync.changed_at(2)
    await sync.sync()
    assert store.calls == [("append", 0), ("append", 2)]
    await sync.sync()  # nothing new
    assert len(store.calls) == 2


async def test_the_change_is_forgotten_once_synced() -> None:
    store = Gated()
    history = [Message.user("hi"), Message.assistant("hello")]
    sync, _ = syncing(store, history)
    await sync.sync()
    sync.changed_at(1)
    await sync.sync()
    await sync.sync()
    assert store.calls == [("append", 0), ("replace", 2)]


async def test_load_counts_what_the_store_has_as_saved() -> None:
    store = MemoryStore()
    await store.append_turn("s1", [Message.user("before"), Message.assistant("yes")])
    history: list[Message] = []
    sync, _ = syncing(store, history)
    loaded = await sync.load()
    assert loaded == [Message.user("before"), Message.assistant("yes")] and sync.saved == 2
    history += [*loaded, Message.user("now")]
    await sync.sync()
    assert [m.text for m in await store.load("s1")] == ["before", "yes", "now"] and sync.saved == 3


async def test_one_save_at_a_time_and_a_change_meanwhile_is_saved_after_it() -> None:
    store = Gated()
    history = [Message.user("one")]
    sync, failures = syncing(store, history)
    store.gate.clear()
    sync.save_soon()
    await settle(sync)
    assert store.calls == [("append", 0)]  # waiting in the store
    history.append(Message.assistant("two"))
    sync.save_soon()  # a saver runs: no second one
    await settle(sync)
    assert store.calls == [("append", 0)]
    store.gate.set()
    await settle(sync)
    assert store.calls == [("append", 0), ("append", 1)]
    assert [m.text for m in await store.load("s1")] == ["one", "two"] and failures == []
    history.append(Message.user("three"))
    sync.save_soon()  # the last saver is done: a new one
    await settle(sync)
    assert [m.text for m in await store.load("s1")] == ["one", "two", "three"]


async def test_a_failing_store_is_told_once_and_the_saver_stops() -> None:
    store = MemoryStore()
    await store.append_turn("s1", [Message.user("someone else's")])
    history = [Message.user("mine")]
    sync, failures = syncing(store, history)  # not loaded: saved=0 is stale, the store refuses
    sync.save_soon()
    await settle(sync)
    assert len(failures) == 1 and isinstance(failures[0], StateError)
    sync.save_soon()
    sync.save_soon()
    await settle(sync)
    assert len(failures) == 2  # each save told, none looping on the failure


async def test_close_cancels_a_save_in_flight_and_saves_the_last_turn_itself(tmp_path: Path) -> None:
    store = Gated()
    history = [Message.user("one")]
    sync, failures = syncing(store, history)
    store.gate.clear()
    sync.save_soon()
    await settle(sync)
    history.append(Message.assistant("two"))
    store.gate.set()
    await sync.close()
    await settle(sync)
    assert [m.text for m in await store.load("s1")] == ["one", "two"] and failures == []
    assert store.calls == [("append", 0), ("append", 0)]  # the cancelled save wrote nothing


async def test_close_with_nothing_in_flight_saves_and_a_failure_there_is_not_raised(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        history = [Message.user("one"), Message.assistant("two")]
        sync, failures = syncing(store, history)
        await sync.close()
        assert [m.text for m in await store.load("s1")] == ["one", "two"]
        history.append(Message.user("three"))
        sync.saved = 0  # stale: the store refuses the append
        await sync.close()
        assert [m.text for m in await store.load("s1")] == ["one", "two"] and failures == []
    finally:
        await store.aclose()
