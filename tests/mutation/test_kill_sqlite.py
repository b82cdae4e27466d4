"""Pins down rxkit.state.sqlite where mutation testing found it loose (issue 18).

Whether close() really closes (the WAL file goes away only when the last
connection closes), replace_last on a one-message history, the fields of
every error (path, session), schema version limits, header checks, and the
rows written (positions, timestamps).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from rxkit.errors import StateCorruptedError, StateError
from rxkit.state.sqlite import SCHEMA_VERSION, SQLiteStore
from rxkit.types import Message


def wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def workers() -> int:
    return sum(t.name.startswith("rxkit-sqlite") for t in threading.enumerate())


def test_blocking_close_closes_the_file_and_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    asyncio.run(store.append_turn("s", [Message.user("hi")]))
    assert wal(path).exists() and workers() == 1
    store.close()
    assert not wal(path).exists()  # SQLite removes the WAL file when its last connection closes
    assert workers() == 0
    with pytest.raises(StateError, match="is closed") as caught:
        asyncio.run(store.load("s"))
    assert caught.value.path == str(path)  # type: ignore[attr-defined]


async def test_aclose_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.append_turn("s", [Message.user("hi")])
    await store.aclose()
    assert not wal(path).exists()
    assert workers() == 0


def test_close_of_an_unused_store_then_use_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    store.close()
    with pytest.raises(StateError, match="closed"):
        asyncio.run(store.load("s"))
    assert workers() == 0


async def test_replace_last_on_a_one_message_history(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "state.db") as store:
        assert await store.append_turn("s", [Message.user("draft")]) == 1
        await store.replace_last("s", Message.user("final"), expected_length=1)
        assert [m.text for m in await store.load("s")] == ["final"]


async def test_replace_last_refuses_an_empty_history_and_names_session_and_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        with pytest.raises(StateError, match="has 0 messages, expected 0") as caught:
            await store.replace_last("s", Message.user("x"), expected_length=0)
        assert (caught.value.session, caught.value.path) == ("s", str(path))  # type: ignore[attr-defined]
        await store.append_turn("s", [Message.user("a"), Message.user("b")])
        with pytest.raises(StateError, match="has 2 messages, expected 1"):
            await store.replace_last("s", Message.user("x"), expected_length=1)
        await store.replace_last("s", Message.user("c"), expected_length=2)
        assert [m.text for m in await store.load("s")] == ["a", "c"]
        with pytest.raises(StateError, match="Message objects, not str") as caught:
            await store.replace_last("s", "text", expected_length=2)  # type: ignore[arg-type]
        assert caught.value.session == "s"  # type: ignore[attr-defined]


async def test_append_errors_name_session_and_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        assert await store.append_turn("s", [Message.user("a")], expected_length=0) == 1
        with pytest.raises(StateError, match="it has 1 messages, expected 0") as caught:
            await store.append_turn("s", [Message.user("b")], expected_length=0)
        assert (caught.value.session, caught.value.path) == ("s", str(path))  # type: ignore[attr-defined]
        with pytest.raises(StateError, match="not int") as caught:
            await store.append_turn("s", [Message.user("b"), 3])  # type: ignore[list-item]
        assert caught.value.session == "s"  # type: ignore[attr-defined]
        assert await store.append_turn("s", [Message.user("b"), Message.user("c")], expected_length=1) == 3


async def test_rows_positions_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("a"), Message.assistant("b")])
        await asyncio.sleep(0.01)
        await store.append_turn("s", [Message.user("c")])
        await store.append_turn("t", [Message.user("d")])
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT session, position FROM rxkit_messages ORDER BY session, position").fetchall()
            assert rows == [("s", 0), ("s", 1), ("s", 2), ("t", 0)]
            created, updated = conn.execute(
                "SELECT created_at, updated_at FROM rxkit_sessions WHERE session = 's'"
            ).fetchone()
            assert updated > created  # the second turn moved updated_at, not created_at
            times = [r[0] for r in conn.execute("SELECT created_at FROM rxkit_messages WHERE session = 's'")]
            assert times[0] == times[1] < times[2]  # one timestamp per turn
            assert conn.execute("SELECT version FROM rxkit_schema").fetchall() == [(SCHEMA_VERSION,)]
        finally:
            conn.close()


async def test_metadata_merges_over_existing_keys_and_is_empty_for_an_unknown_session(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "state.db") as store:
        assert await store.metadata("nobody") == {}
        await store.set_metadata("s", {"a": 1, "b": 2})
        await store.set_metadata("s", {"b": 3})
        assert await store.metadata("s") == {"a": 1, "b": 3}
        with pytest.raises(StateError, match="session metadata must be JSON") as caught:
            await store.set_metadata("s", {"x": object()})
        assert caught.value.session == "s"  # type: ignore[attr-defined]


@pytest.mark.parametrize("stored", ["[1, 2]", "not json"])
async def test_metadata_that_is_not_an_object_is_corruption_naming_the_path(tmp_path: Path, stored: str) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.set_metadata("s", {"a": 1})
        conn = sqlite3.connect(path)
        conn.execute("UPDATE rxkit_sessions SET metadata = ?", (stored,))
        conn.commit()
        conn.close()
        with pytest.raises(StateCorruptedError, match="metadata of session 's' is not a JSON object") as caught:
            await store.metadata("s")
        assert caught.value.path == str(path)  # type: ignore[attr-defined]


async def test_sessions_from_either_table_sorted_and_delete_removes_both(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.set_metadata("b", {"k": 1})
        await store.append_turn("a", [Message.user("x")])
        await store.append_turn("c", [Message.user("y")])
        assert await store.sessions() == ["a", "b", "c"]
        await store.delete("a")
        await store.delete("b")
        assert await store.sessions() == ["c"]
        assert await store.load("a") == [] and await store.metadata("b") == {}


@pytest.mark.parametrize(("version", "error"), [(0, "no valid rxkit schema version"), (2, "newer rxkit")])
async def test_schema_versions_outside_1_to_current_are_refused(tmp_path: Path, version: int, error: str) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("hi")])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE rxkit_schema SET version = ?", (version,))
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    with pytest.raises(StateCorruptedError, match=error) as caught:
        await store.load("s")
    assert caught.value.path == str(path)  # type: ignore[attr-defined]
    await store.aclose()


async def test_the_current_version_reopens_and_keeps_one_version_row(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    for text in ("a", "b"):
        async with SQLiteStore(path) as store:
            await store.append_turn("s", [Message.user(text)])
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM rxkit_schema").fetchall() == [(1,)]
    conn.close()


def test_a_short_file_with_a_sqlite_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 60)
    with pytest.raises(StateCorruptedError, match="is not a SQLite database") as caught:
        SQLiteStore(path)
    assert caught.value.path == str(path)  # type: ignore[attr-defined]


async def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("hi")])
        assert len(await store.load("s")) == 1


async def test_a_file_garbled_after_the_constructor_is_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    path.write_bytes(b"x" * 200)
    with pytest.raises(StateCorruptedError) as caught:
        await store.load("s")
    assert caught.value.path == str(path)  # type: ignore[attr-defined]
    await store.aclose()
    assert path.read_bytes() == b"x" * 200


async def test_sqlite_failures_become_state_errors_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("hi")])
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE rxkit_messages")
        conn.commit()
        conn.close()
        with pytest.raises(StateError, match="failed: no such table") as caught:
            await store.load("s")
        assert type(caught.value) is StateError
        assert caught.value.path == str(path)  # type: ignore[attr-defined]


def test_options_and_repr(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db", timeout=0.5)
    assert store.timeout == 0.5 and not store.memory
    assert repr(store) == f"SQLiteStore({str(tmp_path / 'x.db')!r})"
    memory = SQLiteStore(":memory:")
    assert memory.memory and repr(memory) == "SQLiteStore(':memory:')"
    assert SQLiteStore(tmp_path / "y.db").timeout == 5.0


@pytest.mark.parametrize("bad", ["", 3, None])
async def test_bad_session_names(tmp_path: Path, bad: object) -> None:
    async with SQLiteStore(tmp_path / "state.db") as store:
        with pytest.raises(StateError, match="a session name must be a non-empty string"):
            await store.load(bad)  # type: ignore[arg-type]


def test_a_directory_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="is a directory, not a state store file") as caught:
        SQLiteStore(tmp_path)
    assert caught.value.path == str(tmp_path)  # type: ignore[attr-defined]


def test_an_unreadable_path_says_why_and_names_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "state.db"  # a file where a directory should be
    with pytest.raises(StateError) as caught:
        SQLiteStore(path)
    assert str(caught.value) == f"cannot read state store {path}: Not a directory"
    assert caught.value.path == str(path)  # type: ignore[attr-defined]


async def test_a_corrupted_message_error_carries_the_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("hi")])
        conn = sqlite3.connect(path)
        conn.execute("UPDATE rxkit_messages SET message = 'not json'")
        conn.commit()
        conn.close()
        with pytest.raises(StateCorruptedError, match="message 0 of session 's' is not a valid message") as caught:
            await store.load("s")
        assert caught.value.path == str(path)  # type: ignore[attr-defined]


async def test_a_malformed_page_is_corruption_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("hi " * 50)])
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : 3 * page] = b"\xab" * (2 * page)  # the tables' b-tree pages; the header stays valid
    path.write_bytes(bytes(data))
    store = SQLiteStore(path)
    with pytest.raises(
        StateCorruptedError, match="is not a valid rxkit state store: database disk image is malformed"
    ) as caught:
        await store.load("s")
    assert caught.value.path == str(path)  # type: ignore[attr-defined]
    await store.aclose()


async def test_another_applications_database_error_in_full(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE b (x)")
    conn.execute("CREATE TABLE a (x)")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    with pytest.raises(StateCorruptedError) as caught:
        await store.load("s")
    assert str(caught.value) == (
        f"{path} is a SQLite database of something else (tables: a, b), not an rxkit state store; it was left untouched"
    )
    assert caught.value.path == str(path)  # type: ignore[attr-defined]
    await store.aclose()


async def test_the_lock_timeout_is_the_stores(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", [Message.user("a")])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        store = SQLiteStore(path, timeout=0.05)
        started = time.monotonic()
        with pytest.raises(StateError, match="database is locked"):
            await store.append_turn("s", [Message.user("b")])
        assert time.monotonic() - started < 3.0  # not sqlite3's default of 5 s
        await store.aclose()
    finally:
        other.execute("ROLLBACK")
        other.close()
