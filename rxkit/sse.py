"""An incremental Server-Sent Events decoder, by the WHATWG spec.

Feed it bytes as they arrive from the socket, split anywhere (even inside a
UTF-8 sequence); it returns the events completed by each chunk::

    >>> d = SSEDecoder()
    >>> d.feed(b"event: greet\\r\\ndata: hel")
    []
    >>> d.feed(b"lo\\ndata: world\\n\\n")
    [SSEEvent(data='hello\\nworld', event='greet', id='', retry=None)]

The rules (https://html.spec.whatwg.org/multipage/server-sent-events.html):

* a line ends in CRLF, LF or CR, nothing else (a CR ending one chunk and an
  LF starting the next are one line end);
* a line starting with ``:`` is a comment (keep-alive) and is ignored;
* ``field: value`` sets a field (one space after the colon is dropped); a
  line with no colon is a field with an empty value; unknown fields are
  ignored; ``data`` lines are joined with ``\\n``; ``id`` persists across
  events and is ignored if it contains NUL; ``retry`` must be all digits;
* an event is dispatched on a blank line only, and only if it had a ``data``
  line; what is pending at end of stream is discarded (:attr:`SSEDecoder.pending`
  tells whether an event was cut off);
* one leading UTF-8 byte order mark is stripped; invalid UTF-8 becomes U+FFFD.

Why it is fast: it works on bytes. CR and LF never occur inside a multi-byte
UTF-8 sequence, so lines are split with C-level ``bytes.split`` and only
complete values are decoded, once per event. Each byte is scanned once and a
partial line is kept as a list of pieces joined when it completes, so a
2 MiB event costs the same per byte as many small ones (no ``buffer += chunk``).
"""

from __future__ import annotations

from rxkit.errors import MalformedEventError

__all__ = ["SSEDecoder", "SSEEvent"]

_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_EVENT_BYTES = 64 * 1024 * 1024


class SSEEvent:
    """One dispatched event. ``event`` defaults to ``"message"``; ``id`` is the last event id."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str, event: str = "message", id: str = "", retry: int | None = None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SSEEvent)
            and self.data == other.data
            and self.event == other.event
            and self.id == other.id
            and self.retry == other.retry
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SSEEvent(data={self.data!r}, event={self.event!r}, id={self.id!r}, retry={self.retry!r})"


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` objects, incrementally.

    ``max_event_bytes`` bounds the memory one unfinished line or event may
    take; past it :class:`~rxkit.errors.MalformedEventError` is raised.
    ``retry`` holds the last valid reconnection time the server sent (ms).
    After that error, or after :meth:`close`, the decoder holds nothing of the
    event it dropped and can be fed the next stream.
    """

    __slots__ = (
        "_data",
        "_data_len",
        "_event",
        "_fields_set",
        "_retry_field",
        "_skip_lf",
        "_start",
        "_tail",
        "_tail_len",
        "last_event_id",
        "max_event_bytes",
        "retry",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id = ""
        self.retry: int | None = None
        self._data: list[bytes] = []  # data lines of the event being built
        self._data_len = 0
        self._event = b""
        self._retry_field: int | None = None
        self._fields_set = False  # an event or retry field is pending (rare: skip resetting them per event)
        self._tail: list[bytes] = []  # pieces of a line not yet ended
        self._tail_len = 0
        self._skip_lf = False  # the previous chunk ended with CR
        self._start: bytes | None = b""  # bytes held while a leading BOM is still possible; None after

    @property
    def pending(self) -> bool:
        """True if a partial line or an undispatched event is buffered (the stream was cut)."""
        return bool(self._tail or self._data or self._event or self._start)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk`` and return the events it completed (often none or one)."""
        if self._start is not None:
            chunk = self._start + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._start = chunk  # maybe a BOM split across chunks: wait for more
                return []
            self._start = None
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # A CR ending this chunk may be the first half of a CRLF split across chunks.
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        tail = self._tail
        if b"\n" not in chunk:  # no line end in this chunk: just keep it
            tail.append(chunk)
            self._tail_len += len(chunk)
            if self._tail_len > self.max_event_bytes:
                self._overflow()
            return []
        lines = chunk.split(b"\n")
        last = lines.pop()
        if tail:
            tail.append(lines[0])
            lines[0] = b"".join(tail)
            self._tail = tail = []
            self._tail_len = 0
        if last:
            tail.append(last)
            self._tail_len = len(last)
            if self._tail_len > self.max_event_bytes:
                self._overflow()

        out: list[SSEEvent] = []
        data = self._data
        size = self._data_len  # kept in a local: this loop is the hot path
        limit = self.max_event_bytes
        for line in lines:
            if not line:  # blank line: dispatch
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    if self._fields_set:
                        ev = self._event
                        event = SSEEvent(
                            payload.decode("utf-8", "replace"),
                            ev.decode("utf-8", "replace") if ev else "message",
                            self.last_event_id,
                            self._retry_field,
                        )
                    else:
                        event = SSEEvent(payload.decode("utf-8", "replace"), "message", self.last_event_id)
                    out.append(event)
                    data.clear()
                    size = 0
                if self._fields_set:
                    self._fields_set = False
                    self._retry_field = None
                    self._event = b""
            elif line[:6] == b"data: ":  # the hot path: one `data: ...` line per event
                data.append(line[6:])
                size += len(line) - 5
                if size > limit:
                    self._overflow()
            elif line[:5] == b"data:":  # the same without the optional space
                data.append(line[5:])
                size += len(line) - 4
                if size > limit:
                    self._overflow()
            elif line[0] != 58:  # not a ":" comment
                self._data_len = size
                self._field(line)
                size = self._data_len
                if size > limit:
                    self._overflow()
        self._data_len = size
        return out

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":  # "data:value" with no space, or a bare "data"
            self._data.append(value)
            self._data_len += len(value) + 1
        elif name == b"event":
            self._event = value
            self._fields_set = True
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():  # bytes.isdigit is ASCII-only, as the spec wants
            self.retry = self._retry_field = int(value)
            self._fields_set = True

    def _discard(self) -> None:
        """Drop the partial line and the event being built, its type and retry included."""
        self._tail = []
        self._data.clear()
        self._event = b""
        self._retry_field = None
        self._fields_set = False
        self._tail_len = self._data_len = 0

    def _overflow(self) -> None:
        # The event is dropped whole, so that nothing of it (its type) leaks into the next one.
        self._discard()
        raise MalformedEventError(f"SSE event larger than {self.max_event_bytes} bytes")

    def close(self) -> list[SSEEvent]:
        """End of stream: the spec discards an event not ended by a blank line, so this returns [].

        The decoder is then as new for the next stream (a reconnection), except for
        ``last_event_id`` and ``retry``, which the spec keeps across reconnections.
        """
        self._discard()  # a CR left pending (_skip_lf) can only eat a blank line: harmless
        self._start = b""  # the next stream may begin with a byte order mark
        return []
