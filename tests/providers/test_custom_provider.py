"""The worked example of "Adding a provider" (rxkit.providers' docstring), run against a loopback server.

"echo-sse" is a made-up streaming API: ``POST {base}/echo`` with
``{"model", "text", "stream"}`` and ``Authorization: Bearer KEY`` answers
Server-Sent Events ``event: token`` / ``data: {"t": "..."}``, then
``event: done`` / ``data: {"usage": {"in": N, "out": M}}``; an error is an
HTTP status with a JSON body ``{"detail": "..."}``. :class:`EchoServer`
speaks exactly that. The provider between the markers is the documented
example, character for character (a test checks it).
"""

# ruff: noqa: E402 - the documented example comes first, whole, with its own imports
from __future__ import annotations

# --- example: begin
import json

from rxkit.providers import register_provider
from rxkit.providers.http import HTTPProvider, HTTPRequest, SSEEvent, StreamAccumulator
from rxkit.types import ChatRequest


class EchoSSEProvider(HTTPProvider):
    type = "echo-sse"  # the name specs use
    default_base_url = "http://127.0.0.1:8080"
    api_key_env = "ECHO_SSE_API_KEY"

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        params = self.params(request)  # request > provider defaults > global defaults
        body = {"model": params["model"], "text": request.messages[-1].text, "stream": stream}
        headers = {"authorization": f"Bearer {self.require_key()}"}
        return HTTPRequest(self.url("/echo"), headers, body)

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        data = json.loads(event.data)  # bad JSON or a missing key: a MalformedEventError
        if event.event == "token":
            acc.text(data["t"])  # a TextDelta to every subscriber, now
            return False
        if event.event == "done":
            usage = data.get("usage", {})
            acc.set_usage(usage.get("in"), usage.get("out"))
            acc.finish_reason = "stop"  # ended well (EOF without it: StreamInterruptedError)
            return True  # the answer is complete
        return False  # an event this version does not know: skipped


register_provider("echo-sse", EchoSSEProvider.from_spec)
# --- example: end

import socket
import textwrap
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from reactivex import operators as ops

import rxkit.providers
from rxkit.elements import EndOfTurn, TextDelta
from rxkit.errors import AuthenticationError, ProviderServerError, StreamInterruptedError
from rxkit.providers import create_provider
from rxkit.providers.client import HTTPOptions
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderCallFailed
from rxkit.testing import ano_leaks
from rxkit.types import Message

KEY = "echo-test-key-0123456789"
QUESTION = ChatRequest(messages=[Message.user("Hello there")])


@dataclass
class Reply:
    """What the server answers next: tokens then done (``usage``), an error, or tokens then a cut connection."""

    tokens: tuple[str, ...] = ()
    usage: tuple[int, int] = (0, 0)
    status: int = 200
    detail: str = ""
    cut: bool = False


class EchoServer:
    """A loopback server speaking echo-sse exactly; replies are scripted with :meth:`push`."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def __aenter__(self) -> EchoServer:
        app = web.Application()
        app.router.add_post("/echo", self._echo)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"detail": "invalid API key"}, status=401)
        reply = self.replies.popleft()
        if reply.status >= 400:
            return web.json_response({"detail": reply.detail}, status=reply.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for token in reply.tokens:
            await response.write(f"event: token\ndata: {json.dumps({'t': token})}\n\n".encode())
        if reply.cut:  # gone mid-answer: no done event, no chunked-encoding terminator
            assert request.transport is not None
            request.transport.abort()
            return response
        usage = {"usage": {"in": reply.usage[0], "out": reply.usage[1]}}
        await response.write(f"event: done\ndata: {json.dumps(usage)}\n\n".encode())
        await response.write_eof()
        return response


class Sleeps:
    """The client's sleep seam: records the backoff delays, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    async with EchoServer() as s:
        yield s


def make(server: EchoServer, bus: EventBus, **kw: Any) -> EchoSSEProvider:
    return EchoSSEProvider("echo-1", api_key=KEY, base_url=server.url, bus=bus, **kw)


async def test_streams_text_then_the_answer_with_usage(server: EchoServer, bus: EventBus) -> None:
    server.push(Reply(tokens=("Hel", "lo", " there"), usage=(3, 3)))
    provider = make(server, bus)
    async with ano_leaks():
        out = await provider.stream(QUESTION).pipe(ops.to_list())
        await provider.aclose()
    assert out[:-1] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" there")]
    end = out[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    assert end.response.text == "Hello there" and end.response.finish_reason == "stop"
    assert (end.response.usage.input_tokens, end.response.usage.output_tokens) == (3, 3)
    headers, body = server.requests[0]
    assert body == {"model": "echo-1", "text": "Hello there", "stream": True}
    assert headers["Accept"] == "text/event-stream" and headers["Authorization"] == f"Bearer {KEY}"
    completed = [e for e in bus.history if isinstance(e, ProviderCallCompleted)]
    assert [(e.provider, e.output_tokens) for e in completed] == [("echo-sse", 3)]


async def test_built_by_the_registry_from_a_spec(server: EchoServer, bus: EventBus) -> None:
    server.push(Reply(tokens=("hi",), usage=(2, 1)))
    provider = create_provider({"type": "echo-sse", "model": "echo-2", "base_url": server.url, "api_key": KEY})
    assert isinstance(provider, EchoSSEProvider) and provider.name == "echo-sse"
    async with ano_leaks():
        response = await provider.chat(QUESTION)  # no parse_response: chat() collects the stream
        await provider.aclose()
    assert response.text == "hi" and server.requests[0][1]["model"] == "echo-2"


async def test_an_http_error_with_a_json_body_is_typed_and_not_retried(server: EchoServer, bus: EventBus) -> None:
    sleeps = Sleeps()
    provider = EchoSSEProvider("echo-1", api_key="wrong-key-0123456789", base_url=server.url, bus=bus, sleep=sleeps)
    async with ano_leaks():
        with pytest.raises(AuthenticationError, match="HTTP 401: invalid API key") as info:
            await provider.stream(QUESTION).pipe(ops.to_list())
        await provider.aclose()
    assert info.value.status == 401 and info.value.provider == "echo-sse"
    assert len(server.requests) == 1 and sleeps.delays == []  # 401 is never retried
    failed = [e for e in bus.history if isinstance(e, ProviderCallFailed)]
    assert [e.error_type for e in failed] == ["AuthenticationError"]


async def test_a_server_error_is_retried_through_the_sleep_seam(server: EchoServer, bus: EventBus) -> None:
    server.push(Reply(status=503, detail="overloaded"), Reply(tokens=("ok",), usage=(1, 1)))
    sleeps = Sleeps()
    provider = make(server, bus, sleep=sleeps, backoff_base=0.25, retry_jitter=0.0)
    async with ano_leaks():
        out = await provider.stream(QUESTION).pipe(ops.to_list())
        await provider.aclose()
        server.push(Reply(status=503, detail="still overloaded"))
        impatient = make(server, bus, sleep=sleeps, max_retries=0)
        with pytest.raises(ProviderServerError, match="HTTP 503: still overloaded"):
            await impatient.chat(QUESTION)
        await impatient.aclose()
    assert isinstance(out[-1], EndOfTurn) and out[-1].response is not None and out[-1].response.text == "ok"
    assert sleeps.delays == [0.25] and len(server.requests) == 3  # one wait, none after the last try


async def test_a_mid_stream_disconnect_keeps_the_partial_text(server: EchoServer, bus: EventBus) -> None:
    server.push(Reply(tokens=("Once", " upon"), cut=True))
    sleeps = Sleeps()
    provider = make(server, bus, sleep=sleeps)
    seen: list[Any] = []
    async with ano_leaks():
        with pytest.raises(StreamInterruptedError) as info:
            await provider.stream(QUESTION).pipe(ops.do_action(seen.append), ops.to_list())
        await provider.aclose()
    assert seen == [TextDelta("Once"), TextDelta(" upon")]  # delivered as they came, before the cut
    assert info.value.partial == "Once upon" and info.value.provider == "echo-sse"
    assert sleeps.delays == []  # text was already out: never retried


class _LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1: a made-up host reaches the loopback server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_the_transport_seam_gives_the_client_its_session(server: EchoServer, bus: EventBus) -> None:
    made: list[aiohttp.ClientSession] = []

    def session_factory(options: HTTPOptions) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_LoopbackResolver()))
        made.append(session)
        return session

    port = server.url.rsplit(":", 1)[1]
    server.push(Reply(tokens=("a",), usage=(1, 1)), Reply(tokens=("b",), usage=(1, 1)))
    provider = EchoSSEProvider(
        "echo-1", api_key=KEY, base_url=f"http://echo.invalid:{port}", bus=bus, session_factory=session_factory
    )
    async with ano_leaks():
        first = await provider.chat(QUESTION)
        second = await provider.chat(QUESTION)
        await provider.aclose()
    assert (first.text, second.text) == ("a", "b")
    assert len(made) == 1 and made[0].closed  # one session per loop, closed by aclose
    assert server.requests[0][0]["Host"] == f"echo.invalid:{port}"


def _first_literal_block(doc: str) -> str:
    """The indented block after the first line ending in ``::`` (reStructuredText's literal block)."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("::")) + 1
    block: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip()


def test_the_documented_example_is_this_code() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    example = source.split("# --- example: begin\n")[1].split("# --- example: end\n")[0]
    assert _first_literal_block(rxkit.providers.__doc__ or "") == example.strip()
    root = Path(__file__).parents[2]
    guides = [p for p in (root / "ADDING_A_PROVIDER.md", root / "README.md") if p.exists()]
    guides = [p for p in guides if "## Adding a provider" in p.read_text(encoding="utf-8")]
    assert guides, "the guide is ADDING_A_PROVIDER.md, or its section in README.md"
    for guide in guides:  # the Markdown copy of the guide shows the same code
        assert example.strip() in guide.read_text(encoding="utf-8"), guide.name
