"""Pins down rxkit.duplex.connection and rxkit.duplex.protocol: the socket's failures, the hooks' defaults (issue 18).

The handshakes are refused by a real aiohttp.web server on 127.0.0.1 with
the HTTP status each case needs, as the real APIs refuse a WebSocket upgrade.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from rxkit.duplex.connection import open_socket, parse_message
from rxkit.duplex.protocol import WireProtocol
from rxkit.elements import ImageFrame
from rxkit.errors import (
    AuthenticationError,
    MalformedEventError,
    ProviderError,
    ProviderHTTPError,
    RateLimitError,
)
from rxkit.providers.client import HttpClient, HTTPOptions
from rxkit.types import ToolCall

pytestmark = pytest.mark.timeout(30)


HEADERS: list[dict[str, str]] = []


@contextlib.asynccontextmanager
async def refusing() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        status = int(request.match_info["status"])
        HEADERS.append(dict(request.headers))
        if status in (101, 102):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            # 101: over aiohttp's default 4 MiB bound; 102: just over rxkit's 16 MiB
            size = 5 * 1024 * 1024 if status == 101 else 16 * 1024 * 1024 + 100
            with contextlib.suppress(ConnectionError):
                await ws.send_str('"' + "a" * size + '"')
                await ws.close()
            return ws
        return web.json_response({"error": {"message": "no"}}, status=status, reason=f"Reason {status}")

    app = web.Application()
    app.router.add_get("/ws/{status}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


async def test_a_refused_handshake_is_typed_by_its_status() -> None:
    client = HttpClient(HTTPOptions())
    try:
        async with refusing() as url:
            for status, kind in [(401, AuthenticationError), (403, AuthenticationError), (429, RateLimitError)]:
                with pytest.raises(kind) as info:
                    await open_socket(client, f"{url}/{status}", {}, "peer")
                error = info.value
                assert str(error) == f"peer: WebSocket handshake refused with HTTP {status}: Invalid response status"
                assert (error.provider, error.status) == ("peer", status)
            for status in (400, 500, 404):
                with pytest.raises(ProviderHTTPError) as http_info:
                    await open_socket(client, f"{url}/{status}", {}, "peer")
                assert type(http_info.value) is ProviderHTTPError
                assert (http_info.value.provider, http_info.value.status) == ("peer", status)
                assert str(http_info.value) == (
                    f"peer: WebSocket handshake refused with HTTP {status}: Invalid response status"
                )
            HEADERS.clear()
            ws = await open_socket(client, f"{url}/101", {"X-Goog-Api-Key": "k-1"}, "peer")
            assert HEADERS[0]["X-Goog-Api-Key"] == "k-1"
            big = await ws.receive()  # messages up to 16 MiB (a long reply's audio in one event)
            assert big.type.name == "TEXT" and len(big.data) == 5 * 1024 * 1024 + 2
            await ws.close()
            ws = await open_socket(client, f"{url}/102", {}, "peer")
            too_big = await ws.receive()
            assert too_big.type.name == "ERROR"
            await ws.close()
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_a_provider_error_without_the_key() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpClient(HTTPOptions())
    try:
        with pytest.raises(ProviderError) as info:
            await open_socket(client, f"ws://127.0.0.1:{port}/ws?key=AIzaSySecret-0123456789abcdefghijklm", {}, "peer")
        assert type(info.value) is ProviderError
        assert str(info.value).startswith(f"peer: cannot reach ws://127.0.0.1:{port}/ws")
        assert str(info.value).endswith(": ClientConnectorError") and "AIzaSySecret" not in str(info.value)
    finally:
        await client.aclose()


def test_a_message_that_is_not_json_or_not_an_object_is_malformed() -> None:
    assert parse_message(b'{"a": 1}', "peer", []) == {"a": 1}
    long = "x" * 300
    with pytest.raises(MalformedEventError) as info:
        parse_message(long, "peer", ["so ", "far"])
    error = info.value
    assert str(error) == f"peer: a server message is not JSON: {long[:80]!r}"
    assert (error.provider, error.line, error.partial) == ("peer", long[:200], "so far")
    with pytest.raises(MalformedEventError) as info:
        parse_message("[1, 2]", "peer", ["p"])
    error = info.value
    assert str(error) == "peer: a server message is not a JSON object"
    assert (error.provider, error.line) == ("peer", "[1, 2]")
    with pytest.raises(MalformedEventError):
        parse_message("1", "peer", [])


def test_the_hooks_a_protocol_must_supply_and_their_defaults() -> None:
    p = WireProtocol()
    assert (p.name, p.input_rate, p.output_rate, p.audio_prefix, p.audio_suffix) == ("duplex", 24000, 24000, b"", b"")
    for hook in (p.connect_url, lambda: p.setup_messages(False), lambda: p.handle({}), lambda: p.text_messages("t")):
        with pytest.raises(NotImplementedError):
            hook()
    for hook in (
        lambda: p.image_messages(ImageFrame(b"", "image/png")),
        lambda: p.tool_result_messages([(ToolCall(id="c", name="f", arguments="{}"), "x")]),
        lambda: p.audio_message(b"pcm"),
    ):
        with pytest.raises(NotImplementedError):
            hook()
    assert p.connect_headers() == {} and p.cancel_messages() == [] and p.commit_messages() == []
    assert p.discard_messages() == [] and p.truncate_messages("i", 1) == [] and p.fatal_error({}) is False


def test_the_audio_message_is_the_prefix_the_base64_and_the_suffix() -> None:
    class Framed(WireProtocol):
        audio_prefix = b'{"a":"'
        audio_suffix = b'"}'

    assert Framed().audio_message(b"\x00" * 60) == '{"a":"' + "A" * 80 + '"}'  # one line: no newline at 76


def test_a_server_close_with_1007_or_1008_ends_the_session() -> None:
    p = WireProtocol()
    for reason in ("API key not valid", "Unauthenticated", "PERMISSION denied", "bad KEY"):
        with pytest.raises(AuthenticationError) as info:
            p.closed_by_server(1008, reason)
        assert str(info.value) == f"duplex: the server closed the session (1008): {reason}"
        assert (info.value.provider, info.value.status) == ("duplex", 401)
    with pytest.raises(ProviderError) as plain:
        p.closed_by_server(1007, "Request contains an invalid argument.")
    assert type(plain.value) is ProviderError and plain.value.provider == "duplex"
    assert str(plain.value) == "duplex: the server closed the session (1007): Request contains an invalid argument."
    with pytest.raises(AuthenticationError):
        p.closed_by_server(1007, "key expired")
    for code in (1000, 1001, 1006, 1009, 1011):
        assert p.closed_by_server(code, "API key not valid") is None
