"""The send side of a duplex session: a bounded queue of client messages and the one task that writes it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import aiohttp

__all__ = ["SendQueue"]


class SendQueue:
    """Client messages (JSON text) waiting for the socket, drained by :meth:`write` in one task.

    Bounded by ``max_queued`` messages for audio: a full queue drops the
    newest audio block (counted in ``dropped_audio``), never a control
    message. ``None`` in the queue closes the socket once everything before
    it was sent.

    >>> q = SendQueue(max_queued=8)
    >>> q.put_audio(b"\\x00\\x00", lambda pcm: pcm.hex())
    >>> q.put(['{"type":"response.create"}'])
    >>> list(q.items)
    ['0000', '{"type":"response.create"}']
    """

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        self.items: deque[str | None] = deque()
        self.dropped_audio = 0
        self.wake: asyncio.Event | None = None  # set up by open(), in the loop that runs the session

    def open(self) -> None:
        """Ready the writer's wake-up (call in the running loop, before :meth:`write`)."""
        self.wake = asyncio.Event()

    def put_audio(self, pcm: bytes, encode: Callable[[bytes], str]) -> None:
        """Queue one audio block as ``encode(pcm)``; dropped when the queue is full."""
        items = self.items
        if len(items) >= self.max_queued:
            self.dropped_audio += 1
            return
        items.append(encode(pcm))
        wake = self.wake
        if wake is not None and not wake.is_set():
            wake.set()

    def put(self, texts: list[str]) -> None:
        """Queue control messages (never dropped)."""
        self.items.extend(texts)
        if self.wake is not None and texts:
            self.wake.set()

    def put_first(self, texts: list[str]) -> None:
        """Queue ``texts`` ahead of everything queued (a connection's setup)."""
        self.items.extendleft(reversed(texts))
        if self.wake is not None:
            self.wake.set()

    def close_after(self) -> None:
        """Close the socket once everything queued so far was sent."""
        self.items.append(None)
        if self.wake is not None:
            self.wake.set()

    async def write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send what is queued, as it comes, until the closing ``None`` (then close ``ws``)."""
        items = self.items
        wake = self.wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while items:
                data = items.popleft()
                if data is None:
                    await ws.close()
                    return
                await ws.send_str(data)
