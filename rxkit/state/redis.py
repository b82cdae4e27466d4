"""A Redis state store (``pip install 'rxkit[redis]'``): history shared by processes and machines.

::

    store = RedisStore("redis://127.0.0.1:6379/0", prefix="myapp")
    chat = Conversation(provider, store=store, session="alice")

Layout, under ``prefix``: a list ``{prefix}:history:{session}`` of message
JSON, a hash ``{prefix}:meta:{session}`` (one JSON value per field), and a set
``{prefix}:sessions``. A turn is appended by one Lua script, so the length
check and the pushes are atomic: either the whole turn is stored or nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rxkit.errors import StateCorruptedError, StateError, safe_url
from rxkit.extras import require_extra
from rxkit.scheduling import close_when_loop_ends
from rxkit.types import Message

__all__ = ["RedisStore"]

_APPEND = """
local length = redis.call('LLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if expected >= 0 and length ~= expected then
  return {0, length}
end
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('SADD', KEYS[2], ARGV[2])
return {1, length + #ARGV - 2}
"""


_REPLACE_LAST = """
local length = redis.call('LLEN', KEYS[1])
if length < 1 or length ~= tonumber(ARGV[1]) then
  return {0, length}
end
redis.call('LSET', KEYS[1], -1, ARGV[2])
return {1, length}
"""


class RedisStore:
    """Conversation history in Redis, behind the :class:`~rxkit.state.StateStore` protocol."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "rxkit", client: Any = None) -> None:
        aioredis = require_extra("redis.asyncio", "redis", "the Redis store")
        self._redis_errors: tuple[type[BaseException], ...] = (__import__("redis").RedisError, OSError)
        self.url = safe_url(url)
        self.prefix = prefix
        self._owned = client is None
        self._from_url = aioredis.Redis.from_url
        self._raw_url = url  # its password is a registered secret: never shown
        self._client = client if client is not None else aioredis.Redis.from_url(url)
        self._append = self._client.register_script(_APPEND)
        self._replace = self._client.register_script(_REPLACE_LAST)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: Any = None

    def _here(self) -> Any:
        """The client for the running loop. A client's connections belong to one event loop, and each
        blocking ``Conversation.ask`` runs its own: a new loop gets a new client (of this store's own
        making), whose pool is closed when that loop is shut down."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._owned and self._loop is not None:
                self._client = self._from_url(self._raw_url)
                self._append = self._client.register_script(_APPEND)
                self._replace = self._client.register_script(_REPLACE_LAST)
            if self._owned:
                self._closer = close_when_loop_ends(self._client.aclose)
            self._loop = loop
        return self._client

    def _key(self, kind: str, session: str) -> str:
        if not isinstance(session, str) or not session:
            raise StateError(f"a session name must be a non-empty string, not {session!r}")
        return f"{self.prefix}:{kind}:{session}"

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except self._redis_errors as exc:
            raise StateError(f"Redis at {self.url} failed to {what}: {type(exc).__name__}: {exc}") from None

    async def load(self, session: str) -> list[Message]:
        rows = await self._call("load history", self._here().lrange(self._key("history", session), 0, -1))
        out = []
        for i, row in enumerate(rows):
            try:
                out.append(Message.model_validate_json(row))
            except ValueError as exc:
                raise StateCorruptedError(
                    f"message {i} of session {session!r} in Redis at {self.url} is not a valid message: {exc}",
                    session=session,
                ) from None
        return out

    async def append_turn(self, session: str, messages: list[Message], *, expected_length: int | None = None) -> int:
        """Append one turn atomically; raise :class:`StateError` if ``expected_length`` is stale."""
        key = self._key("history", session)
        rows = []
        for m in messages:
            if not isinstance(m, Message):
                raise StateError(f"can only store Message objects, not {type(m).__name__}", session=session)
            rows.append(m.model_dump_json())
        expected = -1 if expected_length is None else expected_length
        self._here()
        ok, length = await self._call(
            "append a turn",
            self._append(keys=[key, f"{self.prefix}:sessions"], args=[expected, session, *rows]),
        )
        if not ok:
            raise StateError(
                f"session {session!r} changed while the turn ran: it has {length} messages, "
                f"expected {expected_length} (two writers on one session?)",
                session=session,
            )
        return int(length)

    async def replace_last(self, session: str, message: Message, *, expected_length: int) -> None:
        """Replace the last message of a history of ``expected_length`` messages (else :class:`StateError`)."""
        if not isinstance(message, Message):
            raise StateError(f"can only store Message objects, not {type(message).__name__}", session=session)
        key = self._key("history", session)
        self._here()
        ok, length = await self._call(
            "replace a message", self._replace(keys=[key], args=[expected_length, message.model_dump_json()])
        )
        if not ok:
            raise StateError(
                f"session {session!r} has {length} messages, expected {expected_length}: the last one is not replaced",
                session=session,
            )

    async def metadata(self, session: str) -> dict[str, Any]:
        raw = await self._call("read metadata", self._here().hgetall(self._key("meta", session)))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def set_metadata(self, session: str, values: dict[str, Any]) -> None:
        """Merge ``values`` into the session's metadata (JSON values only)."""
        try:
            fields: dict[str | bytes, str | bytes] = {k: json.dumps(v) for k, v in values.items()}
        except (TypeError, ValueError) as exc:
            raise StateError(f"session metadata must be JSON: {exc}", session=session) from None
        if not fields:
            return
        async with self._here().pipeline(transaction=True) as pipe:
            pipe.hset(self._key("meta", session), mapping=fields)
            pipe.sadd(f"{self.prefix}:sessions", session)
            await self._call("write metadata", pipe.execute())

    async def delete(self, session: str) -> None:
        async with self._here().pipeline(transaction=True) as pipe:
            pipe.delete(self._key("history", session), self._key("meta", session))
            pipe.srem(f"{self.prefix}:sessions", session)
            await self._call("delete a session", pipe.execute())

    async def sessions(self) -> list[str]:
        names = await self._call("list sessions", self._here().smembers(f"{self.prefix}:sessions"))
        return sorted(n.decode() for n in names)

    async def aclose(self) -> None:
        """Close the connection pool (only if this store created the client)."""
        self._closer = None
        # A client whose loop has ended was closed as that loop shut down (see _here).
        if self._owned and (self._loop is None or self._loop is asyncio.get_running_loop()):
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"
