"""The durable embedded store: one SQLite file, written a turn per transaction.

>>> import asyncio, tempfile, os
>>> async def demo(path):
...     async with SQLiteStore(path) as store:
...         await store.append_turn("s", [Message.user("hi"), Message.assistant("hello")])
...         return [m.text for m in await store.load("s")]
>>> asyncio.run(demo(os.path.join(tempfile.mkdtemp(), "chat.db")))
['hi', 'hello']

All SQLite work runs on one dedicated worker thread (a SQLite connection
belongs to one thread), never on the event loop; :meth:`SQLiteStore.aclose`
stops that thread. The file uses WAL mode, so readers in other processes see
every committed turn while a writer works. Messages are stored as JSON.

A file that is not an rxkit store (garbage bytes, another application's
database, a newer schema) raises :class:`~rxkit.errors.StateCorruptedError`
naming the path, and is never written to.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rxkit.errors import StateCorruptedError, StateError
from rxkit.types import Message

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "default_state_path"]

SCHEMA_VERSION = 1
"""The version of the tables this code writes; a file with a newer version is refused, untouched."""

_HEADER = b"SQLite format 3\x00"
_T = TypeVar("_T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rxkit_schema (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rxkit_sessions (session TEXT PRIMARY KEY, metadata TEXT NOT NULL DEFAULT '{}',"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rxkit_messages (session TEXT NOT NULL, position INTEGER NOT NULL,"
    " message TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (session, position)) WITHOUT ROWID",
)


def default_state_path() -> Path:
    """Where ``rxkit`` keeps conversations by default: ``<user data dir>/rxkit/state.db``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("rxkit", appauthor=False)) / "state.db"


class SQLiteStore:
    """Conversation history in a SQLite file (``":memory:"`` for a private in-memory database).

    ``timeout`` is how long a write waits for another process's write lock.
    Use ``async with`` or call :meth:`aclose` to close the file and stop the
    worker thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.memory = os.fspath(path) == ":memory:"
        self.path = Path(path) if not self.memory else Path(":memory:")
        self.timeout = timeout
        if not self.memory:
            _check_header(self.path)
        self._conn: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    # -- the protocol ---------------------------------------------------
    async def load(self, session: str) -> list[Message]:
        """The session's history, oldest first."""
        return await self._call(self._load, _check(session))

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        """Append one turn's messages in one transaction; returns the new history length.

        Raises :class:`StateError` if ``expected_length`` is given and the
        stored history has another length (it changed since it was loaded).
        """
        for m in messages:
            if not isinstance(m, Message):
                raise StateError(f"can only store Message objects, not {type(m).__name__}", session=session)
        return await self._call(self._append, _check(session), list(messages), expected_length)

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        """Replace the last message of a history of ``expected_length`` messages (else :class:`StateError`)."""
        if not isinstance(message, Message):
            raise StateError(f"can only store Message objects, not {type(message).__name__}", session=session)
        await self._call(self._replace_last, _check(session), message, expected_length)

    async def metadata(self, session: str) -> dict[str, Any]:
        return await self._call(self._metadata, _check(session))

    async def set_metadata(self, session: str, values: dict[str, Any]) -> None:
        """Merge ``values`` (JSON values) into the session's metadata."""
        try:
            json.dumps(values)
        except (TypeError, ValueError) as exc:
            raise StateError(f"session metadata must be JSON: {exc}", session=session) from None
        await self._call(self._set_metadata, _check(session), values)

    async def delete(self, session: str) -> None:
        await self._call(self._delete, _check(session))

    async def sessions(self) -> list[str]:
        return await self._call(self._sessions)

    async def aclose(self) -> None:
        """Close the file and stop the worker thread (waits for work in progress)."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.wrap_future(executor.submit(self._close_connection))
        finally:
            executor.shutdown(wait=True)  # the worker is idle by now: this joins it at once

    def close(self) -> None:
        """Blocking form of :meth:`aclose`, for scripts outside an event loop."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close_connection).result()
            executor.shutdown(wait=True)

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- plumbing: everything below runs on the worker thread -------------
    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise StateError(f"the state store {self.path} is closed", path=str(self.path))
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rxkit-sqlite")
        # If the caller is cancelled the job still runs to its end: a transaction
        # either commits whole or not at all, never half.
        return await asyncio.wrap_future(self._executor.submit(self._guarded, fn, *args))

    def _guarded(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn, *args)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: sqlite3.Error) -> StateError:
        code = getattr(exc, "sqlite_errorname", "")
        if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            return StateCorruptedError(f"{self.path} is not a valid rxkit state store: {exc}", path=str(self.path))
        return StateError(f"state store {self.path} failed: {exc}", path=str(self.path))

    def _open(self) -> sqlite3.Connection:
        if not self.memory:
            _check_header(self.path)  # again: the file may have changed since the constructor
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            tables = _tables(conn)
            if tables and "rxkit_schema" not in tables:
                raise StateCorruptedError(
                    f"{self.path} is a SQLite database of something else (tables: {', '.join(sorted(tables))}), "
                    "not an rxkit state store; it was left untouched",
                    path=str(self.path),
                )
            if tables:
                self._check_version(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            if not tables:
                with _transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    if conn.execute("SELECT COUNT(*) FROM rxkit_schema").fetchone()[0] == 0:
                        conn.execute("INSERT INTO rxkit_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT MAX(version) FROM rxkit_schema").fetchone()
        version = row[0] if row else None
        if not isinstance(version, int) or version < 1:
            raise StateCorruptedError(f"{self.path} has no valid rxkit schema version", path=str(self.path))
        if version > SCHEMA_VERSION:
            raise StateCorruptedError(
                f"{self.path} was written by a newer rxkit (schema {version}; this one reads up to "
                f"{SCHEMA_VERSION}); it was left untouched",
                path=str(self.path),
            )

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _load(self, conn: sqlite3.Connection, session: str) -> list[Message]:
        rows = conn.execute(
            "SELECT position, message FROM rxkit_messages WHERE session = ? ORDER BY position", (session,)
        ).fetchall()
        out = []
        for position, text in rows:
            try:
                out.append(Message.model_validate_json(text))
            except ValueError as exc:
                raise StateCorruptedError(
                    f"{self.path}: message {position} of session {session!r} is not a valid message: {exc}",
                    path=str(self.path),
                ) from None
        return out

    def _append(self, conn: sqlite3.Connection, session: str, messages: list[Message], expected: int | None) -> int:
        rows = [m.model_dump_json() for m in messages]  # serialised here, off the event loop
        now = time.time()
        with _transaction(conn):
            length = conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM rxkit_messages WHERE session = ?", (session,)
            ).fetchone()[0]
            if expected is not None and length != expected:
                raise StateError(
                    f"session {session!r} changed while the turn ran: it has {length} messages, "
                    f"expected {expected} (two writers on one session?)",
                    session=session,
                    path=str(self.path),
                )
            conn.executemany(
                "INSERT INTO rxkit_messages (session, position, message, created_at) VALUES (?, ?, ?, ?)",
                [(session, length + i, text, now) for i, text in enumerate(rows)],
            )
            conn.execute(
                "INSERT INTO rxkit_sessions (session, created_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (session) DO UPDATE SET updated_at = excluded.updated_at",
                (session, now, now),
            )
        return int(length) + len(rows)

    def _replace_last(self, conn: sqlite3.Connection, session: str, message: Message, expected: int) -> None:
        text = message.model_dump_json()
        with _transaction(conn):
            length = conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM rxkit_messages WHERE session = ?", (session,)
            ).fetchone()[0]
            if expected < 1 or length != expected:
                raise StateError(
                    f"session {session!r} has {length} messages, expected {expected}: the last one is not replaced",
                    session=session,
                    path=str(self.path),
                )
            conn.execute(
                "UPDATE rxkit_messages SET message = ? WHERE session = ? AND position = ?", (text, session, length - 1)
            )

    def _metadata(self, conn: sqlite3.Connection, session: str) -> dict[str, Any]:
        row = conn.execute("SELECT metadata FROM rxkit_sessions WHERE session = ?", (session,)).fetchone()
        if row is None:
            return {}
        try:
            value = json.loads(row[0])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise StateCorruptedError(
                f"{self.path}: metadata of session {session!r} is not a JSON object", path=str(self.path)
            )
        return value

    def _set_metadata(self, conn: sqlite3.Connection, session: str, values: dict[str, Any]) -> None:
        now = time.time()
        with _transaction(conn):
            merged = {**self._metadata(conn, session), **values}
            conn.execute(
                "INSERT INTO rxkit_sessions (session, metadata, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (session) DO UPDATE SET metadata = excluded.metadata, updated_at = excluded.updated_at",
                (session, json.dumps(merged), now, now),
            )

    def _delete(self, conn: sqlite3.Connection, session: str) -> None:
        with _transaction(conn):
            conn.execute("DELETE FROM rxkit_messages WHERE session = ?", (session,))
            conn.execute("DELETE FROM rxkit_sessions WHERE session = ?", (session,))

    def _sessions(self, conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT session FROM rxkit_sessions UNION SELECT session FROM rxkit_messages ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.

    IMMEDIATE takes the write lock up front, so the length check and the
    insert of ``append_turn`` see the same history even across processes.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _check_header(path: Path) -> None:
    """Refuse, without writing, a file that is not a SQLite database."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StateError(f"{path} is a directory, not a state store file", path=str(path)) from None
    except OSError as exc:
        raise StateError(f"cannot read state store {path}: {exc.strerror}", path=str(path)) from None
    if head and (len(head) < 100 or not head.startswith(_HEADER)):
        raise StateCorruptedError(
            f"{path} is not a SQLite database (it may be corrupted); it was left untouched", path=str(path)
        )


def _check(session: str) -> str:
    if not isinstance(session, str) or not session:
        raise StateError(f"a session name must be a non-empty string, not {session!r}")
    return session
