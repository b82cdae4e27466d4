"""Opening a duplex session's WebSocket and reading its messages, with the failures as typed errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from rxkit.errors import (
    AuthenticationError,
    MalformedEventError,
    ProviderError,
    ProviderHTTPError,
    RateLimitError,
    redact,
)
from rxkit.providers.client import HttpClient

__all__ = ["open_socket", "parse_message"]


async def open_socket(
    client: HttpClient, url: str, headers: dict[str, str], name: str
) -> aiohttp.ClientWebSocketResponse:
    """The WebSocket to ``url`` on ``client``'s session; a refused handshake is a typed error naming ``name``."""
    try:
        # compress=0: a frame's payload is copied before send_frame can yield, so the writer may reuse its buffer
        return await client.session().ws_connect(
            url, headers=headers, heartbeat=30.0, max_msg_size=16 * 1024 * 1024, compress=0
        )
    except aiohttp.WSServerHandshakeError as exc:
        where = f"{name}: WebSocket handshake refused with HTTP {exc.status}: {exc.message}"
        if exc.status in (401, 403):
            raise AuthenticationError(where, provider=name, status=exc.status) from None
        if exc.status == 429:
            raise RateLimitError(where, provider=name, status=429) from None
        raise ProviderHTTPError(where, provider=name, status=exc.status) from None
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise ProviderError(f"{name}: cannot reach {redact(url)}: {type(exc).__name__}") from None


def parse_message(data: str | bytes, name: str, partial: list[str]) -> dict[str, Any]:
    """One server message as a JSON object; anything else is a :class:`~rxkit.errors.MalformedEventError`.

    ``partial``: the reply's text so far, joined into the error (only then).

    >>> parse_message('{"type": "session.created"}', "openai-realtime", [])
    {'type': 'session.created'}
    """
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedEventError(
            f"{name}: a server message is not JSON: {str(data)[:80]!r}",
            provider=name,
            line=str(data)[:200],
            partial="".join(partial),
        ) from None
    if type(event) is not dict:
        raise MalformedEventError(f"{name}: a server message is not a JSON object", provider=name, line=str(data))
    return event
