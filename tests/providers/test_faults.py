"""Faults on the wire: retries, timeouts, cut streams, malformed events, errors, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.elements import EndOfTurn, TextDelta
from rxkit.errors import (
    AuthenticationError,
    MalformedEventError,
    ProviderError,
    ProviderHTTPError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamError,
    StreamInterruptedError,
)
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderCallFailed
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, recording, sse_body

ERR_500 = {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
ERR_429 = {
    "error": {
        "message": "Rate limit reached for gpt-4o-mini on tokens per min.",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


class Sleeps:
    """Stands in for asyncio.sleep in the retry loop: records the delays, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make(server: OpenAIServer, bus: EventBus, **kw: Any) -> tuple[OpenAIProvider, Sleeps]:
    kw.setdefault("api_key", API_KEY)
    sleeps = Sleeps()
    provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, compatible=False, bus=bus, sleep=sleeps, **kw)
    return provider, sleeps


REQUEST = ChatRequest(messages=[Message.user("Tell me a story.")])


async def run(provider: OpenAIProvider) -> list[Any]:
    return await provider.stream(REQUEST).pipe(ops.to_list())


async def test_429_with_retry_after_then_success(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=429, body=ERR_429, headers={"Retry-After": "1.5"}), Reply(stream=recording("text")))
    provider, sleeps = make(server, bus)
    async with ano_leaks():
        out = await run(provider)
        await provider.aclose()
    assert sleeps.delays == [1.5]  # the server's Retry-After, not our backoff
    assert len(server.requests) == 2
    assert out[-1].response.text.startswith("The capital of France is Paris")


async def test_retry_after_ms_header_wins(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=429, body=ERR_429, headers={"retry-after-ms": "250", "Retry-After": "1"}), Reply())
    provider, sleeps = make(server, bus)
    try:
        await run(provider)
    finally:
        await provider.aclose()
    assert sleeps.delays == [0.25]


async def test_500_then_success_with_jittered_exponential_backoff(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=500, body=ERR_500), Reply(status=503, body=ERR_500), Reply(stream=recording("text")))
    provider, sleeps = make(server, bus, backoff_base=0.4, retry_jitter=0.5)
    try:
        out = await run(provider)
    finally:
        await provider.aclose()
    assert isinstance(out[-1], EndOfTurn)
    assert len(server.requests) == 3
    first, second = sleeps.delays
    assert 0.2 <= first <= 0.4 and 0.4 <= second <= 0.8  # base * 2**n, scaled by [1 - jitter, 1]


async def test_retries_exhausted_gives_the_last_error(server: OpenAIServer, bus: EventBus) -> None:
    server.push(*[Reply(status=429, body=ERR_429, headers={"Retry-After": "0"}) for _ in range(3)])
    provider, sleeps = make(server, bus, max_retries=2)
    try:
        with pytest.raises(RateLimitError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert len(server.requests) == 3 and sleeps.delays == [0.0, 0.0]
    assert info.value.status == 429 and info.value.retry_after == 0.0
    assert "Rate limit reached for gpt-4o-mini" in str(info.value)


async def test_retry_after_longer_than_allowed_is_not_waited_for(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=429, body=ERR_429, headers={"Retry-After": "3600"}))
    provider, sleeps = make(server, bus, max_retry_after=30)
    try:
        with pytest.raises(RateLimitError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert sleeps.delays == [] and info.value.retry_after == 3600


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ProviderHTTPError), (401, AuthenticationError), (403, AuthenticationError), (404, ProviderHTTPError)],
)
async def test_client_errors_are_never_retried(server: OpenAIServer, bus: EventBus, status: int, kind: type) -> None:
    message = f"The model `gpt-9` does not exist ({status})"
    server.push(Reply(status=status, body={"error": {"message": message, "type": "invalid_request_error"}}))
    provider, sleeps = make(server, bus)
    try:
        with pytest.raises(kind) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert len(server.requests) == 1 and sleeps.delays == []
    assert info.value.status == status and info.value.provider == "openai"
    assert message in str(info.value) and f"HTTP {status}" in str(info.value)
    bus.flush()
    failed = bus.events(ProviderCallFailed)
    assert len(failed) == 1 and failed[0].error_type == kind.__name__


async def test_wrong_key_401_is_redacted_everywhere(server: OpenAIServer, bus: EventBus) -> None:
    secret = "sk-proj-WRONGkey0123456789abcdefXYZ"  # the server echoes what it got, as OpenAI does
    server.push(
        Reply(
            status=401,
            body={
                "error": {
                    "message": f"Incorrect API key provided: {secret}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    server.check_auth = False
    debug: list[str] = []
    provider, sleeps = make(server, bus, api_key=secret, debug=debug.append)
    try:
        with pytest.raises(AuthenticationError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert sleeps.delays == []
    assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"  # it was sent...
    bus.flush()
    seen = [
        str(info.value),
        repr(info.value),
        info.value.message,
        info.value.body,
        repr(provider),
        *debug,
        *(repr(e) for e in bus.events()),
    ]
    assert "Incorrect API key provided" in str(info.value)
    assert debug and any("-> POST" in line for line in debug)
    for text in seen:
        assert secret not in text  # ...and appears nowhere else


async def test_key_of_any_shape_is_redacted_from_debug_output(server: OpenAIServer, bus: EventBus) -> None:
    secret = "plainsecret-for-a-local-server-42"
    async with OpenAIServer(api_key=secret) as local:
        debug: list[str] = []
        provider = OpenAIProvider("m", base_url=local.url, api_key=secret, bus=bus, debug=debug.append)
        try:
            await run(provider)
        finally:
            await provider.aclose()
    assert len(debug) >= 3  # the request, and each event
    assert not [line for line in debug if secret in line]


async def test_a_gateways_own_key_header_is_kept_out_of_debug_output(server: OpenAIServer, bus: EventBus) -> None:
    gateway_key = "gw-live-0a1b2c3d4e5f"  # of no known shape, under a header name rxkit has no list entry for
    server.push(Reply(stream=recording("text")))
    debug: list[str] = []
    provider, _ = make(server, bus, headers={"x-portkey-api-key": gateway_key}, debug=debug.append)
    try:
        await run(provider)
    finally:
        await provider.aclose()
    assert server.requests[0].headers["x-portkey-api-key"] == gateway_key  # sent, as it must be
    assert debug and not [line for line in debug if gateway_key in line]
    assert "'x-portkey-api-key': '***'" in debug[0]


async def test_disconnect_mid_stream_keeps_the_partial_text(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text"), cut_after=5))  # role chunk + 4 deltas, then the socket drops
    provider, sleeps = make(server, bus)
    seen: list[Any] = []
    async with ano_leaks():
        with pytest.raises(StreamInterruptedError) as info:
            await provider.stream(REQUEST).pipe(ops.do_action(seen.append), ops.to_list())
        await provider.aclose()
    assert info.value.partial == "The capital of France"
    assert [e.text for e in seen] == ["The", " capital", " of", " France"]
    assert sleeps.delays == [] and len(server.requests) == 1  # never retried once tokens were sent
    assert "openai" in str(info.value)


async def test_eof_without_done_or_finish_is_interrupted(server: OpenAIServer, bus: EventBus) -> None:
    body = b"".join(b"data: " + json.dumps(chunk({"content": t})).encode() + b"\n\n" for t in "abc")
    server.push(Reply(stream=body))
    provider, _ = make(server, bus)
    try:
        with pytest.raises(StreamInterruptedError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert info.value.partial == "abc"


async def test_malformed_event_names_provider_and_line(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("malformed")))
    provider, _ = make(server, bus)
    try:
        with pytest.raises(MalformedEventError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    error = info.value
    assert error.provider == "openai" and str(error).startswith("openai: malformed")
    assert '"content":" wor' in error.line and '"content":" wor' in str(error)
    assert error.partial == "Hello"


async def test_error_payload_mid_stream(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("error_midstream")))
    provider, _ = make(server, bus)
    try:
        with pytest.raises(StreamError) as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert "The server had an error while processing your request" in str(info.value)
    assert "server_error" in str(info.value)
    assert info.value.partial == "Once upon a time"


async def test_slow_first_byte_past_ttft_timeout(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=recording("text"), first_byte_delay=30))
    provider, sleeps = make(server, bus, ttft_timeout=0.3)
    async with ano_leaks():
        with pytest.raises(ProviderTimeoutError, match=r"no first token within 0\.3 s"):
            await run(provider)
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the request was aborted
        await provider.aclose()
    assert sleeps.delays == [] and len(server.requests) == 1
    bus.flush()
    assert [e.error_type for e in bus.events(ProviderCallFailed)] == ["ProviderTimeoutError"]


async def test_keepalive_comments_do_not_count_as_a_first_token(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(stream=b"", hang=True))  # only ": keep-alive" comments, forever
    provider, _ = make(server, bus, ttft_timeout=0.3)
    try:
        with pytest.raises(ProviderTimeoutError, match="first token"):
            await run(provider)
    finally:
        await provider.aclose()


async def test_idle_timeout_after_first_token(server: OpenAIServer, bus: EventBus) -> None:
    stream = sse_body([chunk({"content": "Hel"}), chunk({"content": "lo"})])[: -len(b"data: [DONE]\n\n")]
    server.push(Reply(stream=stream, hang=True, keepalive=False))  # two tokens, then silence
    provider, _ = make(server, bus, idle_timeout=0.3)
    try:
        with pytest.raises(ProviderTimeoutError, match=r"no data for 0\.3 s") as info:
            await run(provider)
    finally:
        await provider.aclose()
    assert info.value.partial == "Hello"


async def test_keepalives_do_not_hold_off_the_idle_timeout(server: OpenAIServer, bus: EventBus) -> None:
    """After the first token, ": keep-alive" comments are not progress: the idle clock runs on."""
    stream = sse_body([chunk({"content": "Hel"})])[: -len(b"data: [DONE]\n\n")]
    server.push(Reply(stream=stream, hang=True))  # a token, then keep-alive comments every 20 ms
    provider, _ = make(server, bus, idle_timeout=0.2)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(ProviderTimeoutError, match=r"no data for 0\.2 s") as info:
                await run(provider)
        await asyncio.wait_for(server.disconnected.wait(), 5)
    finally:
        await provider.aclose()
    assert info.value.partial == "Hel"


async def test_a_stream_that_sends_only_keepalives_ends_at_its_deadline(server: OpenAIServer, bus: EventBus) -> None:
    """The whole call has a deadline (request_timeout), streaming too: then the response is closed and the
    concurrency slot is free for the next call."""
    stream = sse_body([chunk({"content": "Hel"})])[: -len(b"data: [DONE]\n\n")]
    server.push(Reply(stream=stream, hang=True), Reply(stream=recording("text")))
    provider, _ = make(server, bus, request_timeout=0.5, idle_timeout=None, max_concurrency=1)
    loop = asyncio.get_running_loop()
    async with ano_leaks():
        start = loop.time()
        async with asyncio.timeout(5):
            with pytest.raises(
                ProviderTimeoutError, match=r"no complete answer within 0\.5 s \(request_timeout\)"
            ) as info:
                await run(provider)
        took = loop.time() - start
        assert info.value.partial == "Hel"
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the response was closed
        async with asyncio.timeout(5):  # the one slot is free again: the next call proceeds
            out = await run(provider)
        await provider.aclose()
    assert 0.45 <= took < 2.0, took
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.text
    bus.flush()
    assert [e.error_type for e in bus.events(ProviderCallFailed)] == ["ProviderTimeoutError"]


async def test_the_deadline_covers_retries_and_a_slow_non_streaming_answer(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(delay=5))  # the server thinks for longer than the deadline
    provider, sleeps = make(server, bus, request_timeout=0.3, max_retries=3)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(ProviderTimeoutError, match="request_timeout"):
                await provider.chat(REQUEST)
    finally:
        await provider.aclose()
    assert sleeps.delays == [] and len(server.requests) == 1  # a passed deadline is not retried


async def test_connection_refused_is_retried_then_typed(bus: EventBus) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps = Sleeps()
    provider = OpenAIProvider("m", base_url=f"http://127.0.0.1:{port}/v1", bus=bus, max_retries=2, sleep=sleeps)
    async with ano_leaks():
        with pytest.raises(ProviderError, match="cannot reach") as info:
            await run(provider)
        await provider.aclose()
    assert len(sleeps.delays) == 2
    assert not isinstance(info.value, ProviderHTTPError)


async def test_credentials_in_a_base_url_never_show(bus: EventBus) -> None:
    """A password in the user part or a key in the query of base_url stays out of errors and events."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    base = f"http://user:pw-secret-42@127.0.0.1:{port}/v1?api-key=qk-secret-99"
    provider = OpenAIProvider("m", base_url=base, bus=bus, max_retries=0)
    try:
        with pytest.raises(ProviderError, match="cannot reach") as info:
            await run(provider)
    finally:
        await provider.aclose()
    shown = " ".join([str(info.value), repr(info.value), *(repr(e) for e in bus.events(ProviderCallFailed))])
    assert f"127.0.0.1:{port}" in shown
    assert "pw-secret-42" not in shown and "qk-secret-99" not in shown


async def test_500_on_non_streaming_chat_is_retried(server: OpenAIServer, bus: EventBus) -> None:
    completion = {
        "id": "x",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}],
    }
    server.push(Reply(status=502, body="<html>Bad gateway</html>"), Reply(body=completion))
    provider, sleeps = make(server, bus)
    try:
        response = await provider.chat(REQUEST)
    finally:
        await provider.aclose()
    assert response.text == "fine" and len(sleeps.delays) == 1


async def test_502_html_body_becomes_the_message(server: OpenAIServer, bus: EventBus) -> None:
    server.push(*[Reply(status=502, body="<html>Bad gateway</html>") for _ in range(3)])
    provider, _ = make(server, bus)
    try:
        with pytest.raises(ProviderServerError, match="HTTP 502: <html>Bad gateway</html>"):
            await provider.chat(REQUEST)
    finally:
        await provider.aclose()


async def test_successful_call_publishes_no_failure(server: OpenAIServer, bus: EventBus) -> None:
    provider, _ = make(server, bus)
    try:
        out = await run(provider)
    finally:
        await provider.aclose()
    assert [type(e) for e in out] == [TextDelta, EndOfTurn]
    bus.flush()
    assert bus.events(ProviderCallFailed) == [] and len(bus.events(ProviderCallCompleted)) == 1


@contextlib.asynccontextmanager
async def raw_app(routes: list[Any]) -> AsyncIterator[str]:
    """A bare aiohttp server with ``routes``; yields its base address."""
    from aiohttp import web

    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_200_html_page_instead_of_a_stream_says_what_content_type_came(bus: EventBus) -> None:
    """A proxy or captive portal answering 200 with an HTML page: the error names the content type that came
    and the one expected, instead of 'the stream ended before the answer did'."""
    from aiohttp import web

    async def portal(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Please log in</body></html>", content_type="text/html")

    async with raw_app([web.post("/v1/chat/completions", portal)]) as base:
        provider = OpenAIProvider(model="m", api_key="sk-test", base_url=base + "/v1", bus=bus, max_retries=0)
        try:
            with pytest.raises(StreamInterruptedError) as info:
                await run(provider)
        finally:
            await provider.aclose()
    message = str(info.value)
    assert "'text/html" in message and "text/event-stream" in message and "HTTP 200" in message
    assert "stream ended before" not in message


async def test_a_redirect_to_another_host_is_not_followed_so_the_key_stays_home(bus: EventBus) -> None:
    """aiohttp drops only Authorization on a cross-host redirect: Anthropic's x-api-key (and Gemini's
    x-goog-api-key) would have reached the other host."""
    from aiohttp import web

    from rxkit.providers.anthropic import AnthropicProvider

    stolen: list[dict[str, str]] = []

    async def steal(request: web.Request) -> web.Response:
        stolen.append(dict(request.headers))
        return web.Response(status=500)

    async with raw_app([web.post("/steal", steal)]) as other:
        other_host = other.replace("127.0.0.1", "localhost")

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"{other_host}/steal")

        async with raw_app([web.post("/v1/messages", redirect)]) as home:
            provider = AnthropicProvider(api_key="key-of-no-known-shape-1234", base_url=home, bus=bus)
            try:
                with pytest.raises(
                    ProviderError, match=r"HTTP 307 redirect to http://localhost:\d+/steal not followed"
                ):
                    await provider.chat(ChatRequest(messages=[Message.user("hi")]))
            finally:
                await provider.aclose()
    assert stolen == []


async def test_an_aiohttp_error_is_not_chained_to_the_providers_error(bus: EventBus) -> None:
    """aiohttp's exceptions carry the request headers (request_info): chained, the key would reach any
    error reporter that walks __cause__ / __context__."""
    key = "key-of-no-known-shape-5678"

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n")  # not a valid response
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OpenAIProvider(
        "m", base_url=f"http://127.0.0.1:{port}/v1", api_key=key, compatible=False, bus=bus, sleep=Sleeps()
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.chat(REQUEST)
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()
    error = caught.value
    assert error.__cause__ is None and error.__suppress_context__
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None:
        chain.append(link)
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    assert all(key not in repr(vars(e)) and key not in str(e) for e in chain)


def test_backoff_doubles_and_jitter_spreads_the_waits() -> None:
    from rxkit.providers._retry import RetryPolicy

    steady = RetryPolicy(max_retries=5, backoff_base=0.5, backoff_max=20.0, max_retry_after=60.0, jitter=0.0)
    assert [steady.delay(n, None) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0]  # capped
    jittered = RetryPolicy(max_retries=5, backoff_base=0.5, backoff_max=20.0, max_retry_after=60.0, jitter=0.5)
    waits = [jittered.delay(2, None) for _ in range(400)]
    assert all(1.0 <= w <= 2.0 for w in waits)  # up to half taken off the 2 s step
    assert len({round(w, 6) for w in waits}) > 300, "every client waiting the same time is what jitter prevents"
    assert min(waits) < 1.2 and max(waits) > 1.8
    assert jittered.delay(3, 7.5) == 7.5  # a server's Retry-After is taken as it is


def test_retry_after_as_an_http_date() -> None:
    from datetime import datetime
    from email.utils import format_datetime

    from rxkit.providers._retry import parse_retry_after

    now = 1_763_800_000.0
    date = format_datetime(datetime.fromtimestamp(now + 42, tz=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(42.0)
    past = format_datetime(datetime.fromtimestamp(now - 5, tz=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}, now=now) is None
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


async def test_a_key_from_the_environment_never_shows(monkeypatch: pytest.MonkeyPatch, bus: EventBus) -> None:
    """The key is read from OPENAI_API_KEY (not passed in code) and the server echoes it in its 401."""
    key = "env-key-of-no-known-shape-0007"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    async with OpenAIServer(api_key="another-key-entirely-0000") as server:
        body = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
        server.push(Reply(status=401, body=body))
        debug: list[str] = []
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, compatible=False, bus=bus, debug=debug.append)
        assert provider.api_key == key
        try:
            with pytest.raises(AuthenticationError) as failed:
                await provider.chat(REQUEST)
        finally:
            await provider.aclose()
    assert server.requests[0].headers["Authorization"] == f"Bearer {key}"  # it was used
    bus.flush()
    shown = [str(failed.value), repr(failed.value), *debug, *(repr(e) for e in bus.events())]
    assert not [text for text in shown if key in text]
