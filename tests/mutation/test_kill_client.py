"""Pins down rxkit.providers.client where mutation testing found it loose (issue 18).

The options and the retry policy they make, the production session's
settings, secret headers, what goes on the wire (headers per mode), the
redirect refusal, the exact retry count and the Retry-After cap, and the
debug hook's hiding of credentials. Calls go to the loopback OpenAI server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from reactivex import operators as ops

from rxkit.errors import ProviderError, ProviderServerError, RateLimitError
from rxkit.providers._retry import RetryPolicy
from rxkit.providers.client import OPTION_FIELDS, HttpClient, HTTPOptions, default_session, is_secret_header
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus, ProviderCallFailed
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply

REQUEST = ChatRequest(messages=[Message.user("Hi")])
ERR_500 = {"error": {"message": "boom", "type": "server_error"}}


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make(server: OpenAIServer, bus: EventBus, **kw: Any) -> tuple[OpenAIProvider, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("api_key", API_KEY)
    provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, compatible=False, bus=bus, sleep=sleeps, **kw)
    return provider, sleeps


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("X-API-KEY", True),
        ("x-goog-api-key", True),
        ("Api-Key", True),
        ("x-portkey-api-key", True),
        ("content-type", False),
        ("accept", False),
    ],
)
def test_secret_headers(name: str, secret: bool) -> None:
    assert is_secret_header(name) is secret


def test_options_defaults_and_the_policy_they_make() -> None:
    o = HTTPOptions()
    assert (o.max_retries, o.backoff_base, o.backoff_max, o.max_retry_after, o.retry_jitter) == (
        2,
        0.5,
        20.0,
        60.0,
        0.5,
    )
    assert (o.ttft_timeout, o.idle_timeout, o.connect_timeout, o.request_timeout) == (120.0, 60.0, 10.0, 600.0)
    assert o.max_concurrency == 64
    policy = HTTPOptions(max_retries=7, backoff_base=1.5, backoff_max=9.0, max_retry_after=33.0, retry_jitter=0.25)
    assert policy.retry_policy() == RetryPolicy(7, 1.5, 9.0, 33.0, 0.25)
    assert HttpClient(HTTPOptions(max_retries=5)).retry.max_retries == 5
    assert HttpClient().options == HTTPOptions()
    assert {"max_retries", "ttft_timeout", "idle_timeout", "connect_timeout", "max_concurrency"} <= OPTION_FIELDS
    assert repr(HttpClient(HTTPOptions(max_retries=1))).startswith("HttpClient(HTTPOptions(max_retries=1,")


async def test_the_production_session_is_sized_and_timed_by_the_options() -> None:
    session = default_session(HTTPOptions(max_concurrency=7, connect_timeout=3.0))
    try:
        assert session.connector is not None and session.connector.limit == 7
        assert (session.timeout.total, session.timeout.connect, session.timeout.sock_connect) == (None, 3.0, 3.0)
    finally:
        await session.close()


async def test_closed_before_use_and_aclose_is_harmless_twice() -> None:
    client = HttpClient()
    assert client.closed
    await client.aclose()
    session = client.session()
    assert not client.closed
    await client.aclose()
    assert client.closed and session.closed
    await client.aclose()


async def test_stream_and_plain_calls_send_the_right_headers(server: OpenAIServer, bus: EventBus) -> None:
    provider, _ = make(server, bus, headers={"X-Team": "a"})
    async with ano_leaks():
        await provider.stream(REQUEST).pipe(ops.to_list())
        await provider.chat(REQUEST)
        await provider.aclose()
    streamed, plain = server.requests
    assert streamed.headers["Content-Type"] == "application/json"
    assert streamed.headers["Accept"] == "text/event-stream"
    assert streamed.headers["X-Team"] == "a"
    assert plain.headers["Content-Type"] == "application/json"
    assert plain.headers.get("Accept") != "text/event-stream"
    assert plain.headers["X-Team"] == "a"


@pytest.mark.parametrize("status", [301, 307, 308])
async def test_a_redirect_is_refused_not_followed(server: OpenAIServer, bus: EventBus, status: int) -> None:
    server.push(Reply(status=status, body={}, headers={"Location": "http://elsewhere.invalid/v1"}))
    provider, sleeps = make(server, bus)
    with pytest.raises(ProviderError, match=f"HTTP {status} redirect to http://elsewhere.invalid/v1 not followed"):
        await provider.chat(REQUEST)
    await provider.aclose()
    assert len(server.requests) == 1 and sleeps.delays == []


async def test_a_redirect_without_location_says_so(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=302, body={}))
    provider, _ = make(server, bus)
    with pytest.raises(ProviderError, match="redirect to \\? not followed"):
        await provider.chat(REQUEST)
    await provider.aclose()


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_exactly_max_retries_retries(server: OpenAIServer, bus: EventBus, retries: int) -> None:
    server.push(*[Reply(status=500, body=ERR_500) for _ in range(retries + 2)])
    provider, sleeps = make(server, bus, max_retries=retries, retry_jitter=0.0, backoff_base=1.0)
    with pytest.raises(ProviderServerError, match="HTTP 500: boom"):
        await provider.chat(REQUEST)
    await provider.aclose()
    assert len(server.requests) == retries + 1
    assert sleeps.delays == [1.0 * 2**n for n in range(retries)]


async def test_a_retry_after_beyond_the_cap_fails_at_once_and_at_the_cap_waits(
    server: OpenAIServer, bus: EventBus
) -> None:
    server.push(Reply(status=429, body={"error": {"message": "slow"}}, headers={"Retry-After": "31"}))
    provider, sleeps = make(server, bus, max_retry_after=30.0)
    with pytest.raises(RateLimitError):
        await provider.chat(REQUEST)
    assert sleeps.delays == [] and len(server.requests) == 1
    server.push(Reply(status=429, body={"error": {"message": "slow"}}, headers={"Retry-After": "30"}), Reply())
    await provider.chat(REQUEST)
    assert sleeps.delays == [30.0]
    await provider.aclose()


async def test_a_400_is_not_retried(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=400, body={"error": {"message": "bad"}}), Reply())
    provider, sleeps = make(server, bus)
    with pytest.raises(ProviderError, match="HTTP 400: bad"):
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert len(server.requests) == 1 and sleeps.delays == []


async def test_debug_shows_the_request_and_error_without_secrets(server: OpenAIServer, bus: EventBus) -> None:
    lines: list[str] = []
    server.push(Reply(status=400, body={"error": {"message": "bad"}}))
    provider, _ = make(server, bus, debug=lines.append, headers={"x-portkey-api-key": "pk-secret-value"})
    with pytest.raises(ProviderError):
        await provider.chat(REQUEST)
    await provider.aclose()
    sent, answered = lines
    assert sent.startswith("-> POST " + server.url) and '"Hi"' in sent
    assert API_KEY not in sent and "pk-secret-value" not in sent and "'authorization': '***'" in sent.lower()
    assert answered.startswith("<- HTTP 400 ") and '"bad"' in answered


async def test_unreachable_server_names_the_address_and_publishes_the_failure(bus: EventBus) -> None:
    seen: list[Any] = []
    bus.subscribe(seen.append)
    provider = OpenAIProvider(
        "gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key=API_KEY, bus=bus, sleep=Sleeps(), max_retries=0
    )
    with pytest.raises(ProviderError, match=r"cannot reach http://127\.0\.0\.1:9/v1: ") as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert type(caught.value) is ProviderError
    failed = [e for e in seen if isinstance(e, ProviderCallFailed)]
    assert len(failed) == 1 and failed[0].error_type == "ProviderError" and failed[0].duration_s >= 0


async def test_disposing_a_call_publishes_cancelled(server: OpenAIServer, bus: EventBus) -> None:
    seen: list[Any] = []
    bus.subscribe(seen.append)
    server.push(Reply(first_byte_delay=5.0))  # headers sent, no token yet
    provider, _ = make(server, bus)
    sub = provider.stream(REQUEST).subscribe(lambda _: None)
    while not server.requests:
        await asyncio.sleep(0.01)
    sub.dispose()
    for _ in range(200):
        if any(isinstance(e, ProviderCallFailed) for e in seen):
            break
        await asyncio.sleep(0.01)
    await provider.aclose()
    failed = [e for e in seen if isinstance(e, ProviderCallFailed)]
    assert [(e.error, e.error_type) for e in failed] == [("cancelled", "Cancelled")], [type(e).__name__ for e in seen]


def test_a_session_from_a_finished_loop_is_replaced() -> None:
    made: list[aiohttp.ClientSession] = []

    def factory(options: HTTPOptions) -> aiohttp.ClientSession:
        made.append(default_session(options))
        return made[-1]

    client = HttpClient(HTTPOptions(max_concurrency=3), session_factory=factory)

    async def use() -> bool:
        client.session()
        return client.session() is made[-1]

    assert asyncio.run(use()) and asyncio.run(use())
    assert len(made) == 2
