"""The state store protocol: conversation history per session, saved a turn at a time.

A turn is saved atomically with :meth:`StateStore.append_turn`: either every
message of the turn is stored, or none is. A failed or cancelled turn never
calls it, so history stays as it was. :meth:`StateStore.replace_last` swaps
the last message for another (the voice graph keeps only what was heard of a
reply cut while it played), refused like a turn if the history changed.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from rxkit.types import Message

__all__ = ["StateStore"]


@runtime_checkable
class StateStore(Protocol):
    async def load(self, session: str) -> list[Message]:
        """The session's history, oldest first (empty for a new session)."""
        ...

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        """Append one turn's messages atomically; returns the new history length.

        With ``expected_length``, raise :class:`~rxkit.errors.StateError` if the
        stored history changed since it was loaded (two writers on one session).
        """
        ...

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        """Replace the last message of a history of ``expected_length`` messages, atomically.

        Raise :class:`~rxkit.errors.StateError` if the stored history has another
        length (it changed since it was loaded) or is empty.
        """
        ...

    async def metadata(self, session: str) -> dict[str, Any]: ...

    async def set_metadata(self, session: str, values: dict[str, Any]) -> None: ...

    async def delete(self, session: str) -> None: ...

    async def sessions(self) -> list[str]: ...

    async def aclose(self) -> None: ...
