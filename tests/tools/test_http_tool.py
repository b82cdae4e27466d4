"""HTTP endpoint tools against a real loopback aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from rxkit.errors import ToolArgumentsError, ToolExecutionError, ToolTimeoutError
from rxkit.testing import ano_leaks
from rxkit.tools import http_tool

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def weather(request: web.Request) -> web.Response:
        body = await request.json()
        if body["city"] == "slow":
            await asyncio.sleep(5)
        if body["city"] == "broken":
            return web.Response(status=500, text="database down")
        return web.json_response({"city": body["city"], "temp_c": 21})

    app = web.Application()
    app.router.add_post("/weather", weather)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/weather"
    await runner.cleanup()


async def test_posts_arguments_and_returns_the_body(server: str) -> None:
    async with ano_leaks():
        weather = http_tool("weather", server, SCHEMA, description="Weather now")
        result = await weather.run('{"city": "Oslo"}')
    assert not result.is_error
    assert result.content == '{"city": "Oslo", "temp_c": 21}'


async def test_http_errors_go_back_as_error_results(server: str) -> None:
    result = await http_tool("weather", server, SCHEMA).run({"city": "broken"})
    assert result.is_error and "HTTP 500" in result.content and "database down" in result.content


async def test_timeout_is_a_typed_error(server: str) -> None:
    with pytest.raises(ToolTimeoutError, match="timed out"):
        await http_tool("weather", server, SCHEMA, timeout=0.3).run({"city": "slow"})


async def test_schema_is_checked_before_any_request(server: str) -> None:
    with pytest.raises(ToolArgumentsError):
        await http_tool("weather", server, SCHEMA).run({"town": "Oslo"})


async def test_unreachable_endpoint_is_a_typed_error() -> None:
    with pytest.raises(ToolExecutionError, match="could not reach"):
        await http_tool("weather", "http://127.0.0.1:1/x", SCHEMA, timeout=5).run({"city": "Oslo"})
