"""The StateStore contract, run against every store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rxkit.errors import StateError
from rxkit.state import MemoryStore, RedisStore, SQLiteStore, StateStore
from rxkit.types import Message, ToolCall


@pytest.fixture(params=["memory", "sqlite", "sqlite-in-memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        s: StateStore = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "state.db")
    elif request.param == "redis":
        s = RedisStore(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex}")
    else:
        s = SQLiteStore(":memory:")
    yield s
    await s.aclose()


TURN = [
    Message.user("add 1 and 2"),
    Message.assistant("", [ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')]),
    Message.tool("c1", "3", name="add"),
    Message.assistant("It is 3."),
]


async def test_is_a_state_store(store: StateStore) -> None:
    assert isinstance(store, StateStore)


async def test_new_session_is_empty(store: StateStore) -> None:
    assert await store.load("nobody") == []
    assert await store.metadata("nobody") == {}
    assert await store.sessions() == []


async def test_turns_append_in_order_and_round_trip(store: StateStore) -> None:
    assert await store.append_turn("s", TURN) == 4
    assert await store.append_turn("s", [Message.user("thanks"), Message.assistant("welcome")]) == 6
    history = await store.load("s")
    assert history == [*TURN, Message.user("thanks"), Message.assistant("welcome")]
    assert history[1].tool_calls[0].arguments == '{"a": 1, "b": 2}'


async def test_sessions_are_separate(store: StateStore) -> None:
    await store.append_turn("a", [Message.user("to a")])
    await store.append_turn("b", [Message.user("to b")])
    assert [m.text for m in await store.load("a")] == ["to a"]
    assert await store.sessions() == ["a", "b"]
    await store.delete("a")
    assert await store.load("a") == []
    assert await store.sessions() == ["b"]


async def test_expected_length_guards_against_a_second_writer(store: StateStore) -> None:
    await store.append_turn("s", [Message.user("1"), Message.assistant("2")], expected_length=0)
    with pytest.raises(StateError, match="expected 0"):
        await store.append_turn("s", [Message.user("stale")], expected_length=0)
    assert len(await store.load("s")) == 2  # the refused turn left nothing
    assert await store.append_turn("s", [Message.user("3")], expected_length=2) == 3


async def test_metadata_merges_and_must_be_json(store: StateStore) -> None:
    await store.set_metadata("s", {"title": "Chat", "n": 1})
    await store.set_metadata("s", {"n": 2})
    assert await store.metadata("s") == {"title": "Chat", "n": 2}
    assert "s" in await store.sessions()
    with pytest.raises(StateError, match="JSON"):
        await store.set_metadata("s", {"bad": object()})
    assert await store.metadata("s") == {"title": "Chat", "n": 2}


async def test_bad_session_names_and_messages_are_refused(store: StateStore) -> None:
    with pytest.raises(StateError):
        await store.load("")
    with pytest.raises(StateError, match="Message"):
        await store.append_turn("s", ["not a message"])  # type: ignore[list-item]
    assert await store.load("s") == []


async def test_the_last_message_is_replaced_only_on_the_history_it_was_read_from(store: StateStore) -> None:
    """What a voice turn does when its reply was cut while playing: the saved answer becomes what was heard."""
    await store.append_turn("s", [Message.user("q1"), Message.assistant("a1")])
    await store.append_turn("s", [Message.user("q2"), Message.assistant("the whole answer. And more.")])
    replace = store.replace_last
    await replace("s", Message.assistant("the whole answer."), expected_length=4)
    assert [m.text for m in await store.load("s")] == ["q1", "a1", "q2", "the whole answer."]
    with pytest.raises(StateError, match="has 4 messages, expected 3"):
        await replace("s", Message.assistant("stale"), expected_length=3)  # another turn came in between
    with pytest.raises(StateError, match="has 0 messages"):
        await replace("empty", Message.assistant("x"), expected_length=0)
    with pytest.raises(StateError, match="Message objects"):
        await replace("s", "not a message", expected_length=4)
    assert [m.text for m in await store.load("s")] == ["q1", "a1", "q2", "the whole answer."]  # unchanged


def test_the_protocol_declares_what_the_graphs_use() -> None:
    """A store without ``replace_last`` is not a StateStore: the voice graph calls it without looking it up."""

    class AppendOnly:
        async def load(self, session: str) -> list[Message]: ...
        async def append_turn(
            self, session: str, messages: list[Message], *, expected_length: int | None = None
        ) -> int: ...
        async def metadata(self, session: str) -> dict[str, object]: ...
        async def set_metadata(self, session: str, values: dict[str, object]) -> None: ...
        async def delete(self, session: str) -> None: ...
        async def sessions(self) -> list[str]: ...
        async def aclose(self) -> None: ...

    assert not isinstance(AppendOnly(), StateStore)
    AppendOnly.replace_last = MemoryStore.replace_last  # type: ignore[attr-defined]
    assert isinstance(AppendOnly(), StateStore)
