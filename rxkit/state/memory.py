"""An in-process state store: history lives in a dict and dies with the process.

>>> import asyncio
>>> store = MemoryStore()
>>> asyncio.run(store.append_turn("s", [Message.user("hi"), Message.assistant("hello")]))
2
>>> [m.text for m in asyncio.run(store.load("s"))]
['hi', 'hello']
"""

from __future__ import annotations

import json
from typing import Any

from rxkit.errors import StateError
from rxkit.types import Message

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps each session's messages in memory. Safe to share between graphs on one loop.

    Every method completes without awaiting anything, so a turn is appended
    atomically (no other coroutine can run in the middle of it).
    """

    def __init__(self) -> None:
        self._history: dict[str, list[Message]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    async def load(self, session: str) -> list[Message]:
        """The session's history, oldest first (a copy; messages are immutable)."""
        return list(self._history.get(_check(session), ()))

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        """Append one turn's messages; raise :class:`StateError` if ``expected_length`` is stale."""
        history = self._history.get(_check(session), [])
        if expected_length is not None and len(history) != expected_length:
            raise StateError(
                f"session {session!r} changed while the turn ran: it has {len(history)} messages, "
                f"expected {expected_length} (two writers on one session?)",
                session=session,
            )
        for m in messages:
            if not isinstance(m, Message):
                raise StateError(f"can only store Message objects, not {type(m).__name__}", session=session)
        self._history[session] = [*history, *messages]
        return len(self._history[session])

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        """Replace the last message of a history of ``expected_length`` messages (else :class:`StateError`)."""
        history = self._history.get(_check(session), [])
        _check_last(session, len(history), expected_length, message)
        self._history[session] = [*history[:-1], message]

    async def metadata(self, session: str) -> dict[str, Any]:
        return json.loads(json.dumps(self._metadata.get(_check(session), {})))

    async def set_metadata(self, session: str, values: dict[str, Any]) -> None:
        """Merge ``values`` into the session's metadata (JSON values only, as in every store)."""
        merged = {**self._metadata.get(_check(session), {}), **values}
        try:
            self._metadata[session] = json.loads(json.dumps(merged))
        except (TypeError, ValueError) as exc:
            raise StateError(f"session metadata must be JSON: {exc}", session=session) from None

    async def delete(self, session: str) -> None:
        self._history.pop(session, None)
        self._metadata.pop(session, None)

    async def sessions(self) -> list[str]:
        return sorted(set(self._history) | set(self._metadata))

    async def aclose(self) -> None:
        """Nothing to release; the history stays readable."""

    def __repr__(self) -> str:
        return f"MemoryStore(sessions={len(self._history)})"


def _check(session: str) -> str:
    if not isinstance(session, str) or not session:
        raise StateError(f"a session name must be a non-empty string, not {session!r}")
    return session


def _check_last(session: str, length: int, expected: int, message: Any) -> None:
    if not isinstance(message, Message):
        raise StateError(f"can only store Message objects, not {type(message).__name__}", session=session)
    if expected < 1 or length != expected:
        raise StateError(
            f"session {session!r} has {length} messages, expected {expected}: the last one is not replaced",
            session=session,
        )
