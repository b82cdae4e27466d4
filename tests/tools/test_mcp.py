"""Real MCP servers: mcp-server-time (PyPI, stdio), server-everything (npm, stdio and streamable HTTP)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from rxkit.errors import ConfigError, ToolExecutionError, ToolTimeoutError
from rxkit.testing import ano_leaks
from rxkit.tools.mcp import MCPServer, python_server
from rxkit.tools.registry import ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = ROOT / ".ci" / "node_modules" / ".bin" / "mcp-server-everything"
HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _everything_installed(request: pytest.FixtureRequest) -> None:
    if "everything" in request.node.name:
        assert EVERYTHING.exists() and shutil.which("node"), "server-everything comes from `bash .ci/setup` (npm)"


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


async def test_time_server_over_stdio_lists_and_calls_tools() -> None:
    before = _children()
    async with ano_leaks(grace=5):
        registry = ToolRegistry()
        async with MCPServer(python_server("mcp_server_time", "--local-timezone", "UTC")) as server:
            names = await server.add_tools_to(registry)
            assert {"get_current_time", "convert_time"} <= set(names)
            assert _children() - before, "the stdio server runs as a child process"
            result = await registry.get("get_current_time").run({"timezone": "UTC"})
            assert not result.is_error
            assert '"timezone": "UTC"' in result.content
            bad = await registry.get("get_current_time").run({"timezone": "Nowhere/Nothing"})
            assert bad.is_error and "Nowhere/Nothing" in bad.content
    assert _children() - before == set(), "no orphan server process"


async def test_schema_from_server_checks_arguments_before_the_call() -> None:
    async with MCPServer(python_server("mcp_server_time")) as server:
        (tool,) = [t for t in await server.list_tools() if t.name == "get_current_time"]
        from rxkit.errors import ToolArgumentsError

        with pytest.raises(ToolArgumentsError, match="timezone"):
            await tool.run({})


async def test_server_crash_mid_call_is_a_typed_error_and_the_server_is_closed() -> None:
    before = _children()
    server = MCPServer([sys.executable, str(HERE / "crashing_server.py")], timeout=20)
    await server.connect()
    try:
        tools = {t.name: t for t in await server.list_tools()}
        assert (await tools["add"].run({"a": 2, "b": 3})).content == "5"
        with pytest.raises(ToolExecutionError, match="crash"):
            await tools["crash"].run({})
    finally:
        await server.aclose()
    await asyncio.sleep(0.1)
    assert _children() - before == set()


async def test_cancelled_call_leaves_the_server_usable() -> None:
    async with MCPServer([sys.executable, str(HERE / "crashing_server.py")], timeout=20) as server:
        call = asyncio.ensure_future(server.call("slow", {"seconds": 5}))
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await server.call("add", {"a": 1, "b": 1})).content == "2"


async def test_a_command_that_is_not_a_server_fails_clearly() -> None:
    with pytest.raises(ToolExecutionError, match="could not start"):
        async with MCPServer([sys.executable, "-c", "import sys; sys.exit(1)"], startup_timeout=20):
            pass


def test_server_needs_a_command_or_a_url() -> None:
    with pytest.raises(ConfigError):
        MCPServer()
    with pytest.raises(ConfigError):
        MCPServer(["x"], url="http://127.0.0.1:1/mcp")


async def test_a_url_with_a_key_in_it_is_named_without_the_key() -> None:
    """Hosted MCP servers take keys in the query or the user part: the server's name (in every tool error,
    event and saved tool result) leaves them out, and they are redacted wherever else they show up."""
    url = "http://user:pw-secret-77@127.0.0.1:1/mcp?api_key=mcp-secret-123&region=eu"
    server = MCPServer(url=url, startup_timeout=5)
    assert server.name == "http://127.0.0.1:1/mcp"
    with pytest.raises(ToolExecutionError) as failed:
        await server.connect()
    await server.aclose()
    message = str(ToolExecutionError(f"{failed.value} (while calling {url})"))
    assert "mcp-secret-123" not in message and "pw-secret-77" not in message
    assert "could not start" in message and "region=eu" in message


async def test_everything_server_over_stdio() -> None:
    async with MCPServer(["node", str(EVERYTHING), "stdio"]) as server:
        tools = {t.name: t for t in await server.list_tools()}
        assert "echo" in tools
        result = await tools["echo"].run({"message": "hello rxkit"})
        assert result.content == "Echo: hello rxkit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def everything_http() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError("server-everything exited")
            import time

            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_everything_server_over_streamable_http(everything_http: str) -> None:
    async with MCPServer(url=everything_http) as server:
        tools = {t.name: t for t in await server.list_tools()}
        assert "echo" in tools
        assert (await tools["echo"].run({"message": "over http"})).content == "Echo: over http"


SILENT_SERVER = "import sys, time\nsys.stderr.write('silent server up\\n'); sys.stderr.flush()\ntime.sleep(3600)\n"


async def test_a_stdio_server_that_never_answers_the_handshake_times_out_typed_and_is_reaped(tmp_path: Path) -> None:
    """It used to be a bare builtins.TimeoutError after about 13 s, with startup_timeout=1."""
    script = tmp_path / "silent_server.py"
    script.write_text(SILENT_SERVER)  # reads nothing, answers nothing, ignores its stdin closing
    import mcp.client.stdio  # noqa: F401 - imported before the clock starts (seconds on a loaded machine)

    before = _children()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ToolTimeoutError, match=r"did not finish the MCP handshake within 1 s") as info:
        await MCPServer([sys.executable, str(script)], startup_timeout=1).connect()
    took = loop.time() - start
    assert "silent server up" in str(info.value)  # what it said last, for the user to see why
    assert _children() - before == set(), "the server process is reaped before the error is raised"
    assert 1.0 <= took < 2.5, took  # it was 13 s (and ~6 s with the SDK's polite stop: stdin, grace, SIGTERM)


async def test_an_http_server_that_never_answers_the_handshake_times_out_typed() -> None:
    from aiohttp import web

    arrived = asyncio.Event()

    async def never(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_route("*", "/mcp", never)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    import mcp.client.streamable_http  # noqa: F401 - imported before the clock starts

    try:
        async with ano_leaks(grace=3):
            start = loop.time()
            with pytest.raises(ToolTimeoutError, match=r"within 1 s \(startup_timeout\)"):
                await MCPServer(url=f"http://127.0.0.1:{port}/mcp", startup_timeout=1).connect()
            took = loop.time() - start
    finally:
        await runner.cleanup()
    assert arrived.is_set() and 1.0 <= took < 2.5, took


async def test_a_server_that_fails_to_start_says_why_from_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "failing_server.py"
    script.write_text(
        "import sys\n"
        "print('loading config', file=sys.stderr)\n"
        "print('fatal: WEATHER_TOKEN is not set (got sk-live-abcdefghijklmnopqrstuvwx)', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    before = _children()
    with pytest.raises(ToolExecutionError, match="could not start") as info:
        await MCPServer([sys.executable, str(script)], startup_timeout=20).connect()
    message = str(info.value)
    assert "fatal: WEATHER_TOKEN is not set" in message
    assert "sk-live-abcdefghijklmnopqrstuvwx" not in message  # redacted like every error
    assert _children() - before == set()
