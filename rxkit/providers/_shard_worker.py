"""One worker process of a :class:`~rxkit.providers.sharded.ShardedProvider` (``python -m`` this module).

It builds the real provider from the spec it is sent and runs the calls it
is given, on its own event loop and core, and sends back what they produce.
Frames both ways are a 4-byte big-endian length and a pickle.

In, on standard input: first ``(spec_dict, api_key, options)``, then
``("open", call_id, request)`` and ``("cancel", call_id)``. Standard input
closing (the parent closed it, or died) ends the worker.

Out, on the original standard output (everything printed goes to standard
error instead): lists of messages, one list per loop iteration at most:
``(call_id, "t", text)`` for a text piece, ``(call_id, "c", (id, name,
arguments))`` for a finished tool call, ``(call_id, "e", element)`` for
any other element, ``(call_id, "end", response)``, ``(call_id, "err",
exception)`` and ``(0, "bus", event)`` for the provider's events. The first
frame is ``[(0, "ready", pid)]`` once the provider is built, or ``[(0,
"fatal", exception)]`` if it could not be (the worker then exits).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections import deque
from typing import Any

from reactivex import abc

from rxkit.elements import EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import ProviderError
from rxkit.telemetry.events import Event, default_bus

_LEN = 4


def frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(_LEN, "big") + body


def picklable_error(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ProviderError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any pickling failure: send what can be sent
        return ProviderError(f"{type(exc).__name__}: {exc}")
    return exc


class _Out:
    """Messages for the parent, written once per loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.WriteTransport) -> None:
        self.loop = loop
        self.transport = transport
        self.pending: list[tuple[int, str, Any]] = []

    def put(self, message: tuple[int, str, Any]) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(message)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if pending and not self.transport.is_closing():
            self.transport.write(frame(pending))


class _Call:
    """The worker's observer of one call: elements become messages."""

    __slots__ = ("call_id", "calls", "done", "out")

    def __init__(self, call_id: int, out: _Out, calls: dict[int, abc.DisposableBase]) -> None:
        self.call_id = call_id
        self.out = out
        self.calls = calls
        self.done = False

    def on_next(self, element: Any) -> None:
        kind = type(element)
        if kind is TextDelta:
            self.out.put((self.call_id, "t", element.text))
        elif kind is ToolCallElement:
            call = element.call
            self.out.put((self.call_id, "c", (call.id, call.name, call.arguments)))
        elif kind is EndOfTurn:
            self.done = True
            self.calls.pop(self.call_id, None)
            self.out.put((self.call_id, "end", element.response))
        else:
            self.out.put((self.call_id, "e", element))

    def on_error(self, error: Exception) -> None:
        self.done = True
        self.calls.pop(self.call_id, None)
        self.out.put((self.call_id, "err", picklable_error(error)))

    def on_completed(self) -> None:
        return None


class _In(asyncio.Protocol):
    """Frames from the parent."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= _LEN:
            n = int.from_bytes(buf[:_LEN], "big")
            if len(buf) < _LEN + n:
                break
            message = pickle.loads(bytes(buf[_LEN : _LEN + n]))
            del buf[: _LEN + n]
            self.worker.handle(message)

    def eof_received(self) -> bool | None:
        self.worker.closed.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.closed.set()


class _Worker:
    def __init__(self) -> None:
        self.provider: Any = None
        self.out: _Out | None = None
        self.calls: dict[int, abc.DisposableBase] = {}
        self.closed = asyncio.Event()

    def handle(self, message: Any) -> None:
        if self.provider is None:  # the first frame: the spec
            assert self.out is not None
            try:
                from rxkit.providers.registry import ProviderSpec, create_provider

                spec, api_key, options = message
                self.provider = create_provider(ProviderSpec(**spec, api_key=api_key))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the start
                self.out.put((0, "fatal", picklable_error(exc)))
                self.closed.set()
                return
            if options.get("deferred_gc"):
                from rxkit.gcpolicy import DeferredGC

                DeferredGC().start()
            self.out.put((0, "ready", os.getpid()))
            return
        kind, call_id = message[0], message[1]
        if kind == "open":
            assert self.out is not None
            observer = _Call(call_id, self.out, self.calls)
            subscription = self.provider.stream(message[2]).subscribe(observer)
            if not observer.done:  # it can end inside subscribe (an error before any I/O)
                self.calls[call_id] = subscription
        elif kind == "cancel":
            subscription = self.calls.pop(call_id, None)
            if subscription is not None:
                subscription.dispose()

    async def run(self, out_fd: int) -> None:
        loop = asyncio.get_running_loop()
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(out_fd, "wb", buffering=0))
        self.out = out = _Out(loop, write_transport)
        default_bus.history = deque(maxlen=16)  # the parent keeps the history; here it would only hold memory

        def forward(event: Event) -> None:
            out.put((0, "bus", event))

        default_bus.subscribe(forward)
        read_transport, _ = await loop.connect_read_pipe(lambda: _In(self), sys.stdin.buffer)
        try:
            await self.closed.wait()
        finally:
            for subscription in self.calls.values():
                subscription.dispose()
            self.calls.clear()
            if self.provider is not None:
                await self.provider.aclose()
            read_transport.close()
            out.flush()
            write_transport.close()


def main() -> None:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the frames
    sys.stdout = sys.stderr
    asyncio.run(_Worker().run(out_fd))


if __name__ == "__main__":
    main()
