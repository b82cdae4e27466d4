"""A lean loopback server speaking OpenAI's streaming Chat Completions, for the latency benchmarks.

Run in its own process (``python -m tests.bench._server``) so that it never
shares the measured client's event loop or core; it prints ``READY <port>``
and exits when its standard input closes (the benchmark ended or died), so
it never outlives the benchmark. :func:`start_server` does all of that.

The pacing profile is in the URL, so every client (aiohttp, openai-python,
LiteLLM) reaches it through an ordinary ``base_url``::

    http://127.0.0.1:PORT/p/<first_us>/<chunks>/<gap_us>/v1/chat/completions

The response headers go out at once; the first content chunk ``first_us``
after the request arrived, then one chunk every ``gap_us`` (scheduled on a
fixed cadence from the first, not from the previous write), each in its own
write, then a chunk with ``finish_reason``, a usage chunk when the request
asked for ``stream_options.include_usage`` (as the real API does), and
``data: [DONE]``. Each chunk's ``delta.content`` is ``"<sent>,<arrived>;"``:
``time.monotonic_ns()`` taken just before the write, and when the request
arrived. CLOCK_MONOTONIC is system-wide on Linux, so a client in another
process subtracts its own ``time.monotonic_ns()`` from these.

Why not aiohttp's web server: at 1000 streams x 33 chunks/s its per-write
and per-task cost would make the server, not the client, the bottleneck on a
2-core machine. This is a bare asyncio protocol: one timer callback and one
``transport.write`` per chunk, HTTP/1.1 keep-alive, chunked encoding.

The server is the instrument, not the subject, so its own stalls must not
show up as the client's: it runs on uvloop when that is installed (the
``bench`` extra), and its cyclic garbage collector only runs between client
runs (on ``GET /stats``), never while streams are timed. A full collection
over 1000 streams' objects takes tens of milliseconds, and a request that
arrives during one would be stamped late. ``GET /stats`` answers the
connections accepted, answers completed and clients that left mid-answer
so far (a benchmark reads it before and after each client).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Profile", "ServerProcess", "base_url", "parse_stamp", "raise_fd_limit", "server_stats", "start_server"]

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"X-Request-Id: req_bench\r\n"
    b"\r\n"
)
_PREFIX = (
    '{"id":"chatcmpl-B3nch","object":"chat.completion.chunk","created":1732000000,'
    '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":'
)


def raise_fd_limit(want: int = 8192) -> int:
    """Raise the soft open-file limit towards ``want`` (1000 sockets need it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def parse_stamp(content: str) -> tuple[int, int]:
    """``(sent_ns, arrived_ns)`` from a chunk's content ``"<sent>,<arrived>;"``."""
    sent, _, arrived = content.partition(",")
    return int(sent), int(arrived.rstrip(";"))


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


def _event(choices: str, usage: str = "null") -> bytes:
    return _chunk(f'data: {_PREFIX}{choices},"usage":{usage}}}\n\n'.encode())


def _content_event(content: str, first: bool) -> bytes:
    role = '"role":"assistant",' if first else ""
    return _event(f'[{{"index":0,"delta":{{{role}"content":"{content}"}},"logprobs":null,"finish_reason":null}}]')


_STOP = _event('[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]')
_DONE = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


class Profile:
    """Pacing of one answer: first chunk after ``first_us``, ``chunks`` chunks ``gap_us`` apart."""

    __slots__ = ("chunks", "first_us", "gap_us")

    def __init__(self, first_us: int, chunks: int, gap_us: int) -> None:
        self.first_us = first_us
        self.chunks = chunks
        self.gap_us = gap_us


def base_url(port: int, first_us: int, chunks: int, gap_us: int) -> str:
    """The ``base_url`` (ending in ``/v1``) that makes the server answer with this profile."""
    return f"http://127.0.0.1:{port}/p/{first_us}/{chunks}/{gap_us}/v1"


class _Stream:
    """One answer being sent: a timer callback per chunk, no task."""

    __slots__ = ("arrived", "conn", "due", "handle", "left", "loop", "profile", "usage")

    def __init__(self, conn: _Conn, profile: Profile, usage: bool, arrived: int) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.profile = profile
        self.usage = usage
        self.arrived = arrived
        self.left = profile.chunks
        self.due = self.loop.time() + profile.first_us / 1e6
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.due, self.send)

    def send(self) -> None:
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            self.handle = None
            return
        first = self.left == self.profile.chunks
        self.left -= 1
        # The stamp is the last thing before the write: transport.write sends at once when the socket
        # buffer has room, so the stamp is the moment the bytes go to the kernel.
        transport.write(_content_event(f"{time.monotonic_ns()},{self.arrived};", first))
        if self.left > 0:
            self.due += self.profile.gap_us / 1e6
            self.handle = self.loop.call_at(self.due, self.send)
            return
        self.handle = None
        tail = _STOP
        if self.usage:
            n = self.profile.chunks
            tail += _event("[]", f'{{"prompt_tokens":12,"completion_tokens":{n},"total_tokens":{n + 12}}}')
        transport.write(tail + _DONE)
        self.conn.finished()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: requests are handled one at a time (clients do not pipeline)."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.stream: _Stream | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
            self.server.disconnects += 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.stream is None:
            self._next_request()

    def finished(self) -> None:
        self.stream = None
        self.server.completed += 1
        if self.close_after and self.transport is not None:
            self.transport.close()
        else:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return  # the body is still coming
        arrived = time.monotonic_ns()
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        self.close_after = headers.get("connection", "").lower() == "close"
        method, path, _ = head[0].split(" ", 2)
        self._answer(method, path, body, arrived)

    def _answer(self, method: str, path: str, body: bytes, arrived: int) -> None:
        assert self.transport is not None
        if method == "GET" and path == "/stats":
            self._plain(200, self.server.stats())
            gc.collect()  # between client runs: see the module's docstring
            return
        parts = path.split("/")
        # /p/<first_us>/<chunks>/<gap_us>/v1/chat/completions
        if method != "POST" or len(parts) != 8 or parts[1] != "p" or parts[5:] != ["v1", "chat", "completions"]:
            self._plain(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
            return
        try:
            request: Any = json.loads(body)
            profile = Profile(int(parts[2]), int(parts[3]), int(parts[4]))
        except ValueError:
            self._plain(400, b'{"error":{"message":"bad request","type":"invalid_request_error"}}')
            return
        if not request.get("stream"):
            self._plain(400, b'{"error":{"message":"this server only streams","type":"invalid_request_error"}}')
            return
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.transport.write(_HEAD)
        self.stream = _Stream(self, profile, usage, arrived)

    def _plain(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
            % (status, b"OK" if status == 200 else b"Error", len(body), body)
        )
        if self.close_after:
            self.transport.close()
        else:
            self._next_request()


class _Server:
    def __init__(self) -> None:
        self.connections = 0
        self.completed = 0
        self.disconnects = 0

    def stats(self) -> bytes:
        return json.dumps(
            {"connections": self.connections, "completed": self.completed, "disconnects": self.disconnects}
        ).encode()


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    state = _Server()
    server = await loop.create_server(lambda: _Conn(state), "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Standard input closes when the benchmark ends, or dies: then this server goes too.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    async with server:
        await stop.wait()
    loop.remove_reader(sys.stdin.fileno())


class ServerProcess:
    """A running server process; ``port``; :meth:`stop` (or ``with``) ends it."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def url(self, first_us: int, chunks: int, gap_us: int) -> str:
        return base_url(self.port, first_us, chunks, gap_us)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server() -> ServerProcess:
    """Start the server in its own process and wait until it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench._server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"benchmark server did not start: {line!r}")
    return ServerProcess(proc, int(line.split()[1]))


@contextlib.contextmanager
def running_server() -> Iterator[ServerProcess]:
    """``with running_server() as server: ...``"""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def server_stats(port: int) -> dict[str, int]:
    """The server's counters (``GET /stats``); also runs its garbage collector, between client runs."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def main() -> None:
    raise_fd_limit()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    gc.freeze()  # imports: never scanned again
    gc.disable()  # collected on GET /stats only, between client runs
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve(port))


if __name__ == "__main__":
    main()
