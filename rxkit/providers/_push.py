"""Push reading of a streamed HTTP body: each network chunk is handled inside ``data_received``.

aiohttp's client hands a response body to an :class:`aiohttp.StreamReader`
that buffers it until a task reads it (``readany``): per network chunk a
buffer append, a future resolved, a task woken and stepped. For a token
stream that is most of the client-side cost of a token, and at 1000
concurrent streams it is what saturates the loop. :func:`push_on` switches
the response's reader, until :func:`push_off`, to :class:`PushReader`,
which has the same layout (no new slots) and hands every piece the HTTP
parser produces straight to a :class:`Sink`: decoding, parsing and
emitting happen in the protocol callback, and the reading task sleeps
until the sink says the stream is over.

The parser's other calls keep aiohttp's behaviour: ``feed_eof`` still
releases the connection to the pool, ``set_exception`` (connection lost
mid-body) still fails the reader, and both are passed on to the sink. When
the read is over the reader is switched back, so whatever follows (the
chunked terminator after ``[DONE]``) is buffered and drained as usual.

Only a plain ``aiohttp.StreamReader`` is switched; anything else (a
subclass from another library, a reader already failed) is read with
``readany`` by the caller.

This leans on aiohttp's internals (the reader's layout, and its parser
calling ``feed_data``), for a measured gain: B3, push against ``readany``
in one run, 261-269 against 332-367 µs p50 per token and 142-178 against
173-238 µs CPU per token. ``tests/test_dependency_internals.py`` fails,
naming what changed, if an aiohttp upgrade breaks it.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

__all__ = ["PushReader", "Sink", "can_push", "push_off", "push_on"]

# The sink of each reader being pushed, by id: the reader has no free slot to hold it,
# and an entry lives only between push_on() and push_off().
_sinks: dict[int, Sink] = {}


class Sink(Protocol):
    """Where a pushed body goes. ``feed`` must not raise: a failure is its own business (a future)."""

    def feed(self, data: bytes) -> None: ...

    def eof(self) -> None: ...

    def error(self, exc: BaseException) -> None: ...


class PushReader(aiohttp.StreamReader):
    """An :class:`aiohttp.StreamReader` that passes data on instead of buffering it."""

    __slots__ = ()

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        if data:
            self.total_bytes += len(data)
            sink = _sinks.get(id(self))
            if sink is not None:
                sink.feed(data)
        return False

    def feed_eof(self) -> None:
        super().feed_eof()
        sink = _sinks.get(id(self))
        if sink is not None:
            sink.eof()

    def set_exception(self, exc: BaseException, *args: Any, **kwargs: Any) -> None:
        super().set_exception(exc, *args, **kwargs)
        sink = _sinks.get(id(self))
        if sink is not None:
            sink.error(exc)


def can_push(content: Any) -> bool:
    """True when ``content`` is a plain, healthy aiohttp reader that :func:`push_on` may switch."""
    return type(content) is aiohttp.StreamReader and content.exception() is None


def push_on(content: aiohttp.StreamReader, sink: Sink) -> None:
    """Switch ``content`` to push into ``sink`` (data already buffered, and an EOF already seen,
    are passed on first). Always pair with :func:`push_off`."""
    key = id(content)
    # Draining may resume a paused parser, which feeds the buffer again (re-entrantly): drain until empty.
    pieces = []
    while piece := content.read_nowait():
        pieces.append(piece)
    _sinks[key] = sink
    content.__class__ = PushReader
    if pieces:
        sink.feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
    if content.is_eof():
        sink.eof()


def push_off(content: aiohttp.StreamReader) -> None:
    """Switch ``content`` back to buffering (what arrives from now on waits for ``readany``)."""
    content.__class__ = aiohttp.StreamReader
    _sinks.pop(id(content), None)
