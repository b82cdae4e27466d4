"""Tools of MCP servers, through the official ``mcp`` SDK (install ``rxkit[mcp]``).

Over stdio (rxkit starts the server as a subprocess) or streamable HTTP::

    async with MCPServer(["python", "-m", "mcp_server_time"]) as server:
        registry = ToolRegistry()
        await server.add_tools_to(registry)
        print(await registry.get("get_current_time").run({"timezone": "UTC"}))

The SDK's client lives in anyio task groups that must be entered and left by
the same task, so each server runs in one task of its own that holds the
connection open; calls from any task are passed to it. Closing the server
(or leaving the ``async with``) ends that task, which stops the subprocess:
no orphan process is left behind. A server that crashes mid-call gives a
:class:`~rxkit.errors.ToolExecutionError`.

Starting: a server that does not finish the MCP handshake within
``startup_timeout`` seconds is stopped (a stdio process is reaped: the SDK
closes its stdin and kills it if it stays) and the caller gets a
:class:`~rxkit.errors.ToolTimeoutError`; one that fails to start gives a
:class:`~rxkit.errors.ToolExecutionError`. Both end with the last lines
the stdio server wrote to its stderr (redacted), which is otherwise passed
on to this process's stderr as it comes::

    try:
        await MCPServer(["my-server"], startup_timeout=5).connect()
    except ToolError as exc:
        print(exc)   # ... could not start: ... stderr: "FOO_TOKEN is not set"
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from rxkit.errors import ConfigError, ToolExecutionError, ToolTimeoutError, redact, safe_url
from rxkit.extras import require_extra
from rxkit.tools.base import Tool, ToolResult
from rxkit.tools.registry import ToolRegistry
from rxkit.types import ToolDescriptor

__all__ = ["MCPServer"]


class MCPServer:
    """One MCP server: a command line (stdio) or a URL (streamable HTTP)."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        name: str | None = None,
        timeout: float = 30.0,
        startup_timeout: float = 60.0,
    ) -> None:
        if (command is None) == (url is None):
            raise ConfigError("give an MCP server either a command (stdio) or a url (streamable HTTP)")
        if command is not None and not command:
            raise ConfigError("the MCP server command is empty")
        self.command = list(command) if command else None
        self.url = url
        self.env = env
        self.cwd = cwd
        self.name = name or (_short_name(url) if url else " ".join(self.command or []))
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._stderr: _StderrTail | None = None
        self._mark: str | None = None

    async def __aenter__(self) -> MCPServer:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Start (stdio) or reach (HTTP) the server and complete the MCP handshake."""
        if self._task is not None:
            return
        mcp = require_extra("mcp", "mcp", "MCP support")
        loop = asyncio.get_running_loop()
        if self.command is not None:
            from mcp.client.stdio import stdio_client

            self._stderr = stderr = await _StderrTail.open(loop)
            self._mark = f"{os.getpid()}-{id(self)}-{loop.time()}"
            env = {**(self.env or {}), _MARK: self._mark}  # how a stuck server is found (the SDK hides its pid)
            params = mcp.StdioServerParameters(command=self.command[0], args=self.command[1:], env=env, cwd=self.cwd)
            target: Any = stdio_client(params, errlog=stderr.file)
        else:
            target = self.url
        self._ready = loop.create_future()
        self._stop = asyncio.Event()
        self._task = loop.create_task(self._hold(mcp.Client(target, read_timeout_seconds=self.timeout)))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.startup_timeout)
        except TimeoutError:
            task, self._task = self._task, None
            if task is not None:  # still in the handshake: stop it now
                if self._mark is not None:  # the SDK's polite stop (stdin closed, grace, SIGTERM) takes ~6 s
                    _kill_marked_child(self._mark)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task  # the SDK stops (and reaps) a stdio server before this returns
            tail = await self._stderr_tail()
            await self.aclose()
            raise ToolTimeoutError(
                f"MCP server {self.name!r} did not finish the MCP handshake within {self.startup_timeout:g} s "
                f"(startup_timeout){tail}",
                tool=self.name,
            ) from None
        except BaseException:
            await self.aclose()
            raise

    async def _hold(self, client: Any) -> None:
        assert self._ready is not None and self._stop is not None
        try:
            async with client:
                self._client = client
                if self._stderr is not None:
                    self._stderr.spawned()
                self._ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits
            if not self._ready.done():
                tail = await self._stderr_tail()
                self._ready.set_exception(
                    ToolExecutionError(
                        f"MCP server {self.name!r} could not start: {_describe(exc)}{tail}", tool=self.name
                    )
                )
        finally:
            self._client = None

    async def _stderr_tail(self) -> str:
        """What a stdio server that did not start wrote last to its stderr, for an error message ('' if none)."""
        if self._stderr is None:
            return ""
        text = await self._stderr.tail()
        return f"; its stderr ends: {text!r}" if text else ""

    async def list_tools(self) -> list[Tool]:
        """The server's tools, as rxkit tools that call back into this server."""
        client = self._connected()
        result = await client.list_tools()
        tools = []
        for t in result.tools:
            descriptor = ToolDescriptor(
                name=t.name,
                description=t.description or "",
                input_schema=t.input_schema or {"type": "object", "properties": {}},
                output_schema=getattr(t, "output_schema", None),
            )
            tools.append(Tool(descriptor, self._executor(t.name), timeout=self.timeout))
        return tools

    async def add_tools_to(self, registry: ToolRegistry, *, prefix: str = "") -> list[str]:
        """Register every tool of the server (names optionally prefixed); returns the names."""
        names = []
        for t in await self.list_tools():
            if prefix:
                t.descriptor = t.descriptor.model_copy(update={"name": prefix + t.name})
            registry.add(t, replace=True)
            names.append(t.name)
        return names

    def _executor(self, tool_name: str) -> Any:
        async def execute(args: dict[str, Any]) -> ToolResult:
            return await self.call(tool_name, args)

        return execute

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call a tool; a tool-level error comes back as ``ToolResult(is_error=True)``."""
        client = self._connected()
        waiter = asyncio.ensure_future(client.call_tool(tool_name, arguments))
        stopped = asyncio.ensure_future(asyncio.shield(self._task)) if self._task else None
        try:
            done, _ = await asyncio.wait([w for w in (waiter, stopped) if w], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        finally:
            if stopped is not None:
                stopped.cancel()
        if waiter not in done:  # the server's task ended first: it crashed or was closed
            waiter.cancel()
            raise ToolExecutionError(f"MCP server {self.name!r} stopped during a call to {tool_name!r}", tool=tool_name)
        try:
            result = waiter.result()
        except TimeoutError:
            raise ToolTimeoutError(f"MCP tool {tool_name!r} timed out after {self.timeout} s", tool=tool_name) from None
        except Exception as exc:
            raise ToolExecutionError(
                f"MCP call to {tool_name!r} on {self.name!r} failed: {_describe(exc)}", tool=tool_name
            ) from exc
        texts = [getattr(c, "text", None) or _content_text(c) for c in result.content]
        content = "\n".join(t for t in texts if t)
        if not content and result.structured_content is not None:
            import json

            content = json.dumps(result.structured_content)
        return ToolResult(content, is_error=bool(result.is_error))

    def _connected(self) -> Any:
        if self._client is None:
            raise ToolExecutionError(f"MCP server {self.name!r} is not connected", tool=self.name)
        return self._client

    async def aclose(self) -> None:
        """Close the connection; a stdio server process is stopped."""
        task, self._task = self._task, None
        stderr, self._stderr = self._stderr, None
        if stderr is not None and task is None:
            stderr.close()
        if task is None:
            return
        if self._stop is not None:
            self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except (TimeoutError, Exception):  # noqa: BLE001 - closing must not raise
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        finally:
            if stderr is not None:
                stderr.close()


_MARK = "RXKIT_MCP_SERVER"  # in a stdio server's environment: finds it among this process's children


def _kill_marked_child(mark: str) -> None:
    """SIGKILL the process group of the child whose environment carries ``mark`` (Linux's /proc; elsewhere
    nothing is done and the SDK's own stop applies). The SDK starts each server in a new session, so the
    group is the server and whatever it started."""
    import glob
    import signal

    needle = f"{_MARK}={mark}".encode()
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            pids.update(int(p) for p in f.read().split())
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            return


class _StderrTail(asyncio.Protocol):
    """A stdio server's stderr: passed on to this process's stderr, its last bytes kept for error messages.

    A pipe (the SDK hands ``file`` to the subprocess, so it needs a real file
    descriptor); the read end is watched by the loop, no task or thread.
    """

    KEEP = 2048

    def __init__(self) -> None:
        self.kept = bytearray()
        self.transport: asyncio.ReadTransport | None = None
        self.eof: asyncio.Event = asyncio.Event()
        self.file: Any = None

    @classmethod
    async def open(cls, loop: asyncio.AbstractEventLoop) -> _StderrTail:
        read_fd, write_fd = os.pipe()
        self = cls()
        self.file = os.fdopen(write_fd, "w")
        try:
            await loop.connect_read_pipe(lambda: self, os.fdopen(read_fd, "rb", buffering=0))
        except BaseException:
            self.file.close()
            os.close(read_fd)
            raise
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.kept += data
        if len(self.kept) > self.KEEP:
            del self.kept[: len(self.kept) - self.KEEP]
        with contextlib.suppress(Exception):  # our stderr closed or odd (a notebook's): the tail is still kept
            sys.stderr.write(data.decode(errors="replace"))

    def eof_received(self) -> bool | None:
        self.eof.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof.set()

    def spawned(self) -> None:
        """The subprocess holds its own copy now: close ours, so the pipe ends when the server does."""
        if self.file is not None and not self.file.closed:
            self.file.close()

    async def tail(self, wait: float = 0.5) -> str:
        """The last lines kept, redacted (after up to ``wait`` seconds for the rest of a server that ended)."""
        self.spawned()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.eof.wait(), wait)
        text = self.kept.decode(errors="replace").strip()
        return redact("\n".join(text.splitlines()[-5:])[-500:])

    def close(self) -> None:
        self.spawned()
        if self.transport is not None:
            self.transport.close()


def _content_text(content: Any) -> str:
    kind = getattr(content, "type", "")
    if kind == "image":
        return f"[image {getattr(content, 'mime_type', '')}]"
    if kind == "resource":
        return str(getattr(getattr(content, "resource", None), "text", "") or "")
    return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def python_server(module: str, *args: str) -> list[str]:
    """The command line that runs a Python MCP server module with this interpreter."""
    return [sys.executable, "-m", module, *args]


def _short_name(url: str) -> str:
    """A server's name from its URL: scheme, host and path only (hosted MCP servers take keys in the user
    part and the query; :func:`~rxkit.errors.safe_url` registers those as secrets)."""
    parts = urlsplit(safe_url(url))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
