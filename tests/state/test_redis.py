"""The Redis store against a real redis-server: atomic turns, corruption, unreachable servers."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from rxkit.errors import StateCorruptedError, StateError
from rxkit.graphs import text_graph
from rxkit.providers.mock import MockProvider
from rxkit.state import RedisStore
from rxkit.testing import ano_leaks
from rxkit.types import Message


def _store(url: str) -> RedisStore:
    return RedisStore(url, prefix=f"t{uuid.uuid4().hex}")


async def test_two_writers_racing_on_one_session_store_exactly_one_turn(redis_url: str) -> None:
    a = _store(redis_url)
    b = RedisStore(redis_url, prefix=a.prefix)
    turn = [Message.user("q"), Message.assistant("a")]
    results = await asyncio.gather(
        a.append_turn("s", turn, expected_length=0),
        b.append_turn("s", turn, expected_length=0),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["StateError", "int"]
    assert len(await a.load("s")) == 2
    await a.aclose()
    await b.aclose()


async def test_a_corrupted_row_is_a_typed_error_and_nothing_is_changed(redis_url: str) -> None:
    store = _store(redis_url)
    await store.append_turn("s", [Message.user("fine")])
    await store._client.rpush(f"{store.prefix}:history:s", b"{not json")
    with pytest.raises(StateCorruptedError, match="message 1 of session 's'"):
        await store.load("s")
    assert await store._client.llen(f"{store.prefix}:history:s") == 2
    await store.aclose()


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    store = RedisStore("redis://:hunter2secret@127.0.0.1:1/0")
    with pytest.raises(
        StateError, match=re.escape("Redis at redis://***@127.0.0.1:1/0 failed to load history")
    ) as info:
        await store.load("s")
    assert "hunter2secret" not in str(info.value)
    await store.aclose()


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        ("redis://h:6379/0?password=query-pass-1&db=0", "redis://h:6379/0?password=***&db=0", "query-pass-1"),
        ("redis://app:with%40at-sign@h/0", "redis://app:***@h/0", "with@at-sign"),
        ("rediss://only-a-token-42@h:6380/1", "rediss://***@h:6380/1", "only-a-token-42"),
        ("unix:///run/redis.sock?password=sock-pass-9", "unix:///run/redis.sock?password=***", "sock-pass-9"),
    ],
)
async def test_every_form_of_password_stays_out_of_repr_and_errors(url: str, shown: str, secret: str) -> None:
    store = RedisStore(url)
    try:
        assert store.url == shown and secret not in repr(store)
        # the message of any error that quotes the password (a driver's, say) comes out without it
        assert secret not in str(StateError(f"failed with {secret}"))
    finally:
        await store.aclose()


async def test_a_text_conversation_keeps_its_history_in_redis(redis_url: str) -> None:
    async with ano_leaks():
        store = _store(redis_url)
        graph = text_graph(MockProvider(["Hello Bob.", "Your name is Bob."]), store=store, session="bob")
        await graph.arun(["I am Bob"])
        await graph.arun(["Who am I?"])
        history = await store.load("bob")
        await store.aclose()
    assert [m.text for m in history] == ["I am Bob", "Hello Bob.", "Who am I?", "Your name is Bob."]


def test_blocking_asks_each_on_its_own_loop_keep_working(redis_url: str) -> None:
    """Each blocking Conversation.ask runs a new event loop; the store's client was tied to the first one
    ('Event loop is closed' on the second ask). Now each loop gets its own client, closed with the loop."""
    import gc
    import warnings

    from rxkit.graphs import Conversation

    session = f"s-{uuid.uuid4().hex}"
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        chat = Conversation(MockProvider(["one", "two", "three"]), store=store, session=session)
        assert [chat.ask(q, timeout=10) for q in ("a", "b", "c")] == ["one", "two", "three"]
        history = asyncio.run(store.load(session))
        assert [m.text for m in history] == ["a", "one", "b", "two", "c", "three"]
        asyncio.run(store.aclose())
        chat.close()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
