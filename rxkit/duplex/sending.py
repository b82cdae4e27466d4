"""The send side of a duplex session: a bounded queue of client messages and the one task that writes it.

Audio blocks wait in the queue as the PCM bytes they came as; the writer
turns each into its JSON event in one reused buffer (:class:`AudioEncoder`)
just before the frame goes out, so a block costs one base64 string and no
other allocation here. The writer sleeps on a future made only when the
queue runs dry: the first message after that wakes it, the ones queued
before it runs ride along (one wake-up per batch, not per block).
"""

from __future__ import annotations

import asyncio
import binascii
from collections import deque
from collections.abc import Callable

import aiohttp

__all__ = ["AudioEncoder", "SendQueue"]


class AudioEncoder:
    """``prefix + base64(pcm) + suffix`` (the JSON text of one audio event) built in one reused bytearray.

    The result is valid until the next call: send it at once (aiohttp copies a
    frame's payload as it masks it, before it can yield).

    >>> encode = AudioEncoder(b'{"audio":"', b'"}')
    >>> bytes(encode(b"hi"))
    b'{"audio":"aGk="}'
    >>> encode(b"ab") is encode(b"cd")
    True
    """

    __slots__ = ("buffer", "_head", "_suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.buffer = bytearray(prefix)
        self._head = len(prefix)
        self._suffix = suffix

    def __call__(self, pcm: bytes) -> bytearray:
        buf = self.buffer
        b64 = binascii.b2a_base64(pcm, newline=False)
        end = self._head + len(b64)
        if len(buf) == end + len(self._suffix):  # a block of the same size as the last: copied in place
            buf[self._head : end] = b64
        else:
            del buf[self._head :]
            buf += b64
            buf += self._suffix
        return buf


class SendQueue:
    """Client messages waiting for the socket, drained by :meth:`write` in one task.

    Items: ``bytes`` (an audio block's PCM, sent as ``encode(pcm)``), ``str``
    (a control event's JSON), ``None`` (close the socket once everything
    before it was sent). Bounded by ``max_queued`` messages for audio: a full
    queue drops the newest audio block (counted in ``dropped_audio``), never
    a control message.

    >>> q = SendQueue(max_queued=8, encode=lambda pcm: pcm.hex().encode())
    >>> q.put_audio(b"pcm")
    >>> q.put(['{"type":"response.create"}'])
    >>> list(q.items)
    [b'pcm', '{"type":"response.create"}']
    """

    def __init__(self, max_queued: int, encode: Callable[[bytes], bytes | bytearray]) -> None:
        self.max_queued = max_queued
        self.encode = encode
        # Bounded by max_queued for audio (put_audio drops the newest block past it); control messages,
        # a handful per turn, always pass.
        self.items: deque[bytes | str | None] = deque()
        self.dropped_audio = 0
        self.opened = False  # a session runs (the queue is drained)
        self._waiter: asyncio.Future[None] | None = None  # the idle writer's; None while it runs

    def open(self) -> None:
        """The session runs: what is queued now will be written."""
        self.opened = True

    def put_audio(self, pcm: bytes) -> None:
        """Queue one audio block; dropped when the queue is full."""
        items = self.items
        if len(items) >= self.max_queued:
            self.dropped_audio += 1
            return
        items.append(pcm)
        if self._waiter is not None:
            self._wake()

    def put(self, texts: list[str]) -> None:
        """Queue control messages (never dropped)."""
        self.items.extend(texts)
        if texts:
            self._wake()

    def put_first(self, texts: list[str]) -> None:
        """Queue ``texts`` ahead of everything queued (a connection's setup)."""
        self.items.extendleft(reversed(texts))
        self._wake()

    def close_after(self) -> None:
        """Close the socket once everything queued so far was sent."""
        self.items.append(None)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send what is queued, as it comes, until the closing ``None`` (then close ``ws``)."""
        items = self.items
        encode = self.encode
        text = aiohttp.WSMsgType.TEXT
        loop = asyncio.get_running_loop()
        self._waiter = None
        while True:
            while items:
                data = items.popleft()
                if data.__class__ is str:
                    await ws.send_str(data)
                elif data is None:
                    await ws.close()
                    return
                else:  # an audio block (bytes-like)
                    await ws.send_frame(encode(data), text)  # type: ignore[arg-type]
            waiter = self._waiter = loop.create_future()
            await waiter
