"""SQLiteStore specifics: corrupted files, schema, WAL, other processes, atomicity, threads."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rxkit.errors import StateCorruptedError, StateError
from rxkit.state import SQLiteStore, default_state_path
from rxkit.state.sqlite import SCHEMA_VERSION
from rxkit.testing import ano_leaks, no_leaks
from rxkit.types import Message

TURN = [Message.user("hello"), Message.assistant("hi there")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("content", [b"\x00\xffgarbage" * 500, b"short"], ids=["garbage", "short"])
def test_a_file_that_is_not_sqlite_is_refused_at_once_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    before = digest(path)
    with pytest.raises(StateCorruptedError) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)
    assert digest(path) == before
    assert siblings(path) == ["state.db"]


async def test_a_corrupted_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xee" * 4000)  # the magic, then garbage
    before = digest(path)
    store = SQLiteStore(path)
    with pytest.raises(StateCorruptedError) as info:
        await store.load("s")
    assert str(path) in str(info.value)
    with pytest.raises(StateCorruptedError):  # still refused, still not written
        await store.append_turn("s", TURN)
    await store.aclose()
    assert digest(path) == before
    assert siblings(path) == ["state.db"]  # no -wal / -shm / journal files either


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        conn.execute("INSERT INTO invoices (amount) VALUES (9.5)")
    conn.close()
    before = digest(path)
    store = SQLiteStore(path)
    with pytest.raises(StateCorruptedError, match="invoices"):
        await store.append_turn("s", TURN)
    await store.aclose()
    assert digest(path) == before
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    check.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", TURN)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE rxkit_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    async with SQLiteStore(path) as again:
        with pytest.raises(StateCorruptedError, match="newer rxkit"):
            await again.load("s")


async def test_a_corrupted_message_row_names_the_path_and_session(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", TURN)
    with sqlite3.connect(path) as conn:
        conn.execute('UPDATE rxkit_messages SET message = \'{"role": "wizard"}\' WHERE position = 1')
    conn.close()
    async with SQLiteStore(path) as store:
        with pytest.raises(StateCorruptedError, match="message 1 of session 's'") as info:
            await store.load("s")
    assert str(path) in str(info.value)


async def test_wal_mode_schema_table_and_json_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", TURN)
        conn = sqlite3.connect(path)  # a second connection sees the committed turn
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT version FROM rxkit_schema").fetchall() == [(SCHEMA_VERSION,)]
            rows = conn.execute("SELECT message FROM rxkit_messages ORDER BY position").fetchall()
            assert [Message.model_validate_json(r[0]) for r in rows] == TURN
        finally:
            conn.close()


async def test_a_transaction_that_fails_midway_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.append_turn("s", TURN)
    with sqlite3.connect(path) as conn:  # make the second insert of a turn fail inside SQLite
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON rxkit_messages WHEN NEW.message LIKE '%FAIL%' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
    conn.close()
    async with SQLiteStore(path) as store:
        with pytest.raises(StateError, match="refused by trigger"):
            await store.append_turn("s", [Message.user("fine"), Message.assistant("FAIL")])
        assert await store.load("s") == TURN
        assert await store.append_turn("s", [Message.user("next")], expected_length=2) == 3


async def test_another_process_sees_saved_turns_and_cannot_interleave(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from rxkit.errors import StateError
        from rxkit.state import SQLiteStore
        from rxkit.types import Message

        async def main():
            async with SQLiteStore({str(path)!r}) as store:
                history = await store.load("s")
                print(len(history), history[-1].text)
                try:
                    await store.append_turn("s", [Message.user("stale")], expected_length=0)
                except StateError as exc:
                    print("refused:", type(exc).__name__)
                print(await store.append_turn("s", [Message.user("from child")], expected_length=len(history)))

        asyncio.run(main())
        """
    )
    async with SQLiteStore(path) as store:
        await store.append_turn("s", TURN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().split("\n")[:3] == ["2 hi there", "refused: StateError", "3"]
        assert [m.text for m in await store.load("s")] == ["hello", "hi there", "from child"]


async def test_work_runs_on_one_worker_thread_that_aclose_stops(tmp_path: Path) -> None:
    seen: list[str] = []

    class Spy(SQLiteStore):
        def _load(self, conn: sqlite3.Connection, session: str) -> list[Message]:
            seen.append(threading.current_thread().name)
            return super()._load(conn, session)

    async with ano_leaks():
        store = Spy(tmp_path / "state.db")
        await asyncio.gather(*(store.load("s") for _ in range(5)))
        assert len(set(seen)) == 1 and seen[0].startswith("rxkit-sqlite")
        assert seen[0] != threading.current_thread().name
        assert any(t.name.startswith("rxkit-sqlite") for t in threading.enumerate())
        await store.aclose()
    with pytest.raises(StateError, match="closed"):
        await store.load("s")


async def test_no_thread_before_first_use_and_close_is_idempotent(tmp_path: Path) -> None:
    async with ano_leaks(grace=0.0):
        store = SQLiteStore(tmp_path / "state.db")
        assert not any(t.name.startswith("rxkit-sqlite") for t in threading.enumerate())
        await store.aclose()
        await store.aclose()
    assert not (tmp_path / "state.db").exists()  # never used, never created


def test_blocking_close_and_use_across_event_loops(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with no_leaks():
        store = SQLiteStore(path)
        asyncio.run(store.append_turn("s", TURN))  # two loops, one store: as Conversation.ask does
        assert asyncio.run(store.load("s")) == TURN
        store.close()
        store.close()


async def test_memory_database_and_parent_directories(tmp_path: Path) -> None:
    async with SQLiteStore(":memory:") as store:
        await store.append_turn("s", TURN)
        assert await store.load("s") == TURN
    nested = tmp_path / "a" / "b" / "state.db"
    async with SQLiteStore(nested) as store:
        await store.append_turn("s", TURN)
    assert nested.exists()


async def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="directory"):
        SQLiteStore(tmp_path)


def test_default_path_is_in_the_user_data_dir() -> None:
    path = default_state_path()
    assert path.name == "state.db" and "rxkit" in path.parts
