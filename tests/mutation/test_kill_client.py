"""Pins down rxkit.providers.client where mutation testing found it loose (issue 18).

The options and the retry policy they make, the production session's
settings, secret headers, what goes on the wire (headers per mode), the
redirect refusal, the exact retry count and the Retry-After cap, and the
debug hook's hiding of credentials. Calls go to the loopback OpenAI server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from reactivex import operators as ops

from rxkit.errors import (
    ConfigError,
    ProviderError,
    ProviderHTTPError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers._retry import RetryPolicy
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.client import OPTION_FIELDS, HttpClient, HTTPOptions, default_session, is_secret_header
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import (
    EventBus,
    ProviderCallCompleted,
    ProviderCallFailed,
    ProviderCallStarted,
    ProviderFirstToken,
)
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest, Message
from tests.providers.anthropic_server import TEXT_STREAM as ANTHROPIC_TEXT
from tests.providers.anthropic_server import TEXT_STREAM_TEXT as ANTHROPIC_TEXT_TEXT
from tests.providers.anthropic_server import AnthropicServer
from tests.providers.anthropic_server import sse as asse
from tests.providers.gemini_server import TEXT_STREAM as GEMINI_TEXT
from tests.providers.gemini_server import TEXT_STREAM_TEXT as GEMINI_TEXT_TEXT
from tests.providers.gemini_server import GeminiServer, google_error
from tests.providers.gemini_server import Reply as GReply
from tests.providers.gemini_server import chunk as gchunk
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, chunk, sse_body

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


# ---------------------------------------------------------------- events: one call id, the model, each failure kind


async def test_a_calls_events_share_one_call_id_and_name_the_model_asked_for(
    server: OpenAIServer, bus: EventBus
) -> None:
    provider, _ = make(server, bus, name="alpha")
    await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.stream(ChatRequest(messages=[Message.user("Hi")], model="gpt-4o")).pipe(ops.to_list())
    await provider.chat(REQUEST)
    await provider.aclose()
    bus.flush()
    started = bus.events(ProviderCallStarted)
    first = bus.events(ProviderFirstToken)
    completed = bus.events(ProviderCallCompleted)
    models = [(e.provider, e.model) for e in started]
    assert models == [("alpha", "gpt-4o-mini"), ("alpha", "gpt-4o"), ("alpha", "gpt-4o-mini")]
    ids = [e.call_id for e in started]
    assert all(re.fullmatch(r"alpha-\d+", i) for i in ids) and len(set(ids)) == 3
    assert [e.call_id for e in first] == ids and [e.call_id for e in completed] == ids
    assert all(e.provider == "alpha" and 0 <= e.ttft_s < 5 for e in first)


def failed_event(bus: EventBus) -> tuple[ProviderCallStarted, ProviderCallFailed]:
    bus.flush()
    (started,) = bus.events(ProviderCallStarted)
    (failed,) = bus.events(ProviderCallFailed)
    assert (failed.provider, failed.model, failed.call_id) == (started.provider, started.model, started.call_id)
    return started, failed  # type: ignore[return-value]


async def test_a_timeout_names_the_limit_and_is_published(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(first_byte_delay=5.0))
    provider, sleeps = make(server, bus, name="alpha", ttft_timeout=0.2)
    with pytest.raises(ProviderTimeoutError) as caught:
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    error = caught.value
    assert str(error) == "alpha: no first token within 0.2 s"
    assert (error.provider, error.partial, error.reason) == ("alpha", "", "no first token within 0.2 s")  # type: ignore[attr-defined]
    _, failed = failed_event(bus)
    assert (failed.error, failed.error_type) == ("alpha: no first token within 0.2 s", "ProviderTimeoutError")
    assert 0.15 < failed.duration_s < 5 and sleeps.delays == []


async def test_an_http_error_is_published_with_its_type(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=400, body={"error": {"message": "bad"}}))
    provider, _ = make(server, bus, name="alpha")
    with pytest.raises(ProviderError):
        await provider.chat(REQUEST)
    await provider.aclose()
    started, failed = failed_event(bus)
    assert (started.provider, started.model) == ("alpha", "gpt-4o-mini")
    assert (failed.error, failed.error_type) == ("alpha: HTTP 400: bad", "ProviderHTTPError")
    assert 0 <= failed.duration_s < 5


async def test_a_missing_key_stays_a_config_error_and_is_published(
    server: OpenAIServer, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider, _ = make(server, bus, api_key=None)
    with pytest.raises(ConfigError, match="needs an API key") as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert type(caught.value) is ConfigError and server.requests == []
    _, failed = failed_event(bus)
    assert (failed.error, failed.error_type) == (caught.value.message, "ConfigError")
    assert 0 <= failed.duration_s < 5


async def test_any_other_failure_becomes_a_provider_error_chained_to_its_cause(
    server: OpenAIServer, bus: EventBus
) -> None:
    """A debug hook that raises (a user's bug): typed, named, published, and the cause kept for a traceback."""

    def debug(line: str) -> None:
        raise RuntimeError("hook broke")

    provider, _ = make(server, bus, name="alpha", debug=debug)
    with pytest.raises(ProviderError) as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    error = caught.value
    assert type(error) is ProviderError and str(error) == "alpha: RuntimeError: hook broke"
    assert error.provider == "alpha" and isinstance(error.__cause__, RuntimeError)
    _, failed = failed_event(bus)
    assert (failed.error, failed.error_type) == ("alpha: RuntimeError: hook broke", "ProviderError")


async def test_a_disposed_call_is_published_as_cancelled_with_its_call_id(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(first_byte_delay=5.0))
    provider, _ = make(server, bus, name="alpha")
    sub = provider.stream(REQUEST).subscribe(lambda _: None)
    while not server.requests:
        await asyncio.sleep(0.01)
    sub.dispose()
    for _ in range(200):
        bus.flush()
        if bus.events(ProviderCallFailed):
            break
        await asyncio.sleep(0.01)
    await provider.aclose()
    _, failed = failed_event(bus)
    assert (failed.error, failed.error_type) == ("cancelled", "Cancelled") and 0 <= failed.duration_s < 5


async def test_a_timed_out_call_leaves_the_callers_task_uncancelled(server: OpenAIServer, bus: EventBus) -> None:
    """The watchdog cancels the task the call runs in, then turns that into a ProviderTimeoutError: the task's
    cancel request must be withdrawn, else asyncio.timeout and TaskGroup in the caller's task misjudge it."""
    server.push(Reply(first_byte_delay=5.0))
    provider, _ = make(server, bus, ttft_timeout=0.2)
    with pytest.raises(ProviderTimeoutError):
        await provider.client.call(provider, REQUEST, StreamAccumulator(provider.name))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # and nothing is pending for it
    await provider.aclose()


# ---------------------------------------------------------------- which timeouts apply


async def test_a_plain_call_has_no_first_token_timeout(server: OpenAIServer, bus: EventBus) -> None:
    """A non-streaming answer arrives whole: only request_timeout bounds it, not ttft_timeout."""
    server.push(Reply(delay=0.5))
    provider, _ = make(server, bus, ttft_timeout=0.1)
    response = await provider.chat(REQUEST)
    await provider.aclose()
    assert response.text == "ok"


def timed_session(**timeouts: float) -> Any:
    def factory(options: HTTPOptions) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(**timeouts))

    return factory


async def test_a_read_timeout_before_the_answer_is_retried(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(delay=1.0), Reply())
    provider, sleeps = make(server, bus, session_factory=timed_session(sock_read=0.2), ttft_timeout=None)
    out = await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert out[-1].response.text == "ok" and len(server.requests) == 2 and len(sleeps.delays) == 1


async def test_a_read_timeout_after_the_server_answered_is_not_retried(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(first_byte_delay=1.0), Reply())
    provider, sleeps = make(server, bus, name="alpha", session_factory=timed_session(sock_read=0.2), ttft_timeout=None)
    with pytest.raises(ProviderTimeoutError) as caught:
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert str(caught.value) == "alpha: timed out: SocketTimeoutError: Timeout on reading data from socket"
    assert (caught.value.provider, caught.value.partial) == ("alpha", "")  # type: ignore[attr-defined]
    assert len(server.requests) == 1 and sleeps.delays == []


async def test_a_bare_timeout_is_named_without_a_dangling_colon(server: OpenAIServer, bus: EventBus) -> None:
    """aiohttp's total timeout raises TimeoutError() with no message: the error says just its name."""
    server.push(Reply(delay=1.0))
    provider, _ = make(server, bus, name="alpha", session_factory=timed_session(total=0.2), max_retries=0)
    with pytest.raises(ProviderTimeoutError) as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert str(caught.value) == "alpha: timed out: TimeoutError"


# ---------------------------------------------------------------- network errors: which are retried, what they say


async def test_a_connection_cut_before_any_token_is_retried_and_its_usage_forgotten(
    server: OpenAIServer, bus: EventBus
) -> None:
    """The first attempt sends its usage, then the connection drops before any text: the retry starts clean,
    so the answer does not carry the failed attempt's token counts."""
    usage = {"prompt_tokens": 999, "completion_tokens": 0, "total_tokens": 999}
    first = sse_body([chunk(None, usage=usage), chunk({"content": "never"})])
    second = sse_body([chunk({"role": "assistant", "content": ""}), chunk({"content": "ok"}), chunk({}, "stop")])
    server.push(Reply(stream=first, cut_after=1), Reply(stream=second))
    provider, sleeps = make(server, bus, retry_jitter=0.0, backoff_base=0.75)
    out = await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    response = out[-1].response
    assert response.text == "ok" and len(server.requests) == 2 and sleeps.delays == [0.75]
    assert response.usage.input_tokens == 0


async def test_a_connection_cut_mid_stream_says_so_and_keeps_the_text(server: OpenAIServer, bus: EventBus) -> None:
    stream = sse_body([chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop")])
    server.push(Reply(stream=stream, cut_after=2))
    provider, sleeps = make(server, bus, name="alpha")
    with pytest.raises(StreamInterruptedError) as caught:
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    error = caught.value
    assert str(error).startswith("alpha: connection lost mid-stream (ClientPayloadError: ")
    assert (error.provider, error.partial) == ("alpha", "Hello") and sleeps.delays == []


async def test_an_unreachable_server_error_names_the_exception(bus: EventBus) -> None:
    provider = OpenAIProvider(
        "gpt-4o-mini", name="alpha", base_url="http://127.0.0.1:9/v1", api_key=API_KEY, bus=bus, max_retries=0
    )
    with pytest.raises(ProviderError) as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert str(caught.value).startswith("alpha: cannot reach http://127.0.0.1:9/v1: ClientConnectorError: ")
    assert caught.value.provider == "alpha"


# ---------------------------------------------------------------- status codes and bodies


async def test_a_300_is_a_redirect_too(server: OpenAIServer, bus: EventBus) -> None:
    server.push(Reply(status=300, body={}, headers={"Location": "http://elsewhere.invalid/v1"}))
    provider, _ = make(server, bus, name="alpha")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert str(caught.value).startswith("alpha: HTTP 300 redirect to http://elsewhere.invalid/v1 not followed")
    assert caught.value.provider == "alpha"


@pytest.fixture
async def gemini() -> AsyncIterator[GeminiServer]:
    async with GeminiServer() as s:
        yield s


def make_gemini(server: GeminiServer, bus: EventBus, **kw: Any) -> tuple[GeminiProvider, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("retry_jitter", 0.0)
    kw.setdefault("backoff_base", 0.25)
    provider = GeminiProvider(
        "gemini-2.5-flash", api_key=server.api_key, base_url=server.url, bus=bus, sleep=sleeps, **kw
    )
    return provider, sleeps


async def test_an_error_body_that_is_not_utf8_is_still_shown(gemini: GeminiServer, bus: EventBus) -> None:
    gemini.push(GReply(status=500, body=b"\xff\xfe upstream broke"))
    provider, _ = make_gemini(gemini, bus, max_retries=0)
    with pytest.raises(ProviderServerError) as caught:
        await provider.chat(REQUEST)
    await provider.aclose()
    assert str(caught.value) == "gemini: HTTP 500: \ufffd\ufffd upstream broke"


async def test_a_retry_delay_in_the_error_body_is_waited_for(gemini: GeminiServer, bus: EventBus) -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
    exhausted = google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [info])
    gemini.push(GReply(status=429, body=exhausted), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus)
    await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert sleeps.delays == [12.0]


# ---------------------------------------------------------------- an error event before any content (after a 200)


def stream_error(code: int, status: str, details: list[dict[str, Any]] | None = None) -> str:
    return gchunk(google_error(code, status, "try again", details or []))


async def test_an_error_event_before_content_is_retried_with_backoff(gemini: GeminiServer, bus: EventBus) -> None:
    gemini.push(GReply(events=[stream_error(503, "UNAVAILABLE")]), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus)
    out = await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert out[-1].response.text == GEMINI_TEXT_TEXT
    assert len(gemini.requests) == 2 and sleeps.delays == [0.25]


async def test_an_error_event_is_retried_at_most_max_retries_times(gemini: GeminiServer, bus: EventBus) -> None:
    gemini.push(*[GReply(events=[stream_error(503, "UNAVAILABLE")]) for _ in range(4)])
    provider, sleeps = make_gemini(gemini, bus, max_retries=2)
    with pytest.raises(ProviderServerError):
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert len(gemini.requests) == 3 and sleeps.delays == [0.25, 0.5]


async def test_an_error_event_of_a_client_error_is_not_retried(gemini: GeminiServer, bus: EventBus) -> None:
    gemini.push(GReply(events=[stream_error(400, "INVALID_ARGUMENT")]), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus)
    with pytest.raises(ProviderError, match="INVALID_ARGUMENT"):
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert len(gemini.requests) == 1 and sleeps.delays == []


async def test_an_error_event_after_content_is_not_retried(gemini: GeminiServer, bus: EventBus) -> None:
    gemini.push(GReply(events=[GEMINI_TEXT[0], stream_error(503, "UNAVAILABLE")]), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus)
    with pytest.raises(ProviderServerError) as caught:
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert caught.value.partial == "The capital of France"  # type: ignore[attr-defined]
    assert len(gemini.requests) == 1 and sleeps.delays == []


async def test_an_error_events_retry_delay_is_waited_for(gemini: GeminiServer, bus: EventBus) -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    gemini.push(GReply(events=[stream_error(429, "RESOURCE_EXHAUSTED", [info])]), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus)
    await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert sleeps.delays == [7.0]


async def test_an_error_events_retry_delay_beyond_the_cap_fails_at_once(gemini: GeminiServer, bus: EventBus) -> None:
    """As for a 429's Retry-After: a wait longer than max_retry_after is not waited for (it was: an hour);
    a wait of exactly max_retry_after is."""

    def exhausted(delay: str) -> GReply:
        info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        return GReply(events=[stream_error(429, "RESOURCE_EXHAUSTED", [info])])

    gemini.push(exhausted("3600s"), GReply(events=GEMINI_TEXT))
    provider, sleeps = make_gemini(gemini, bus, max_retry_after=30.0)
    with pytest.raises(RateLimitError):
        await provider.stream(REQUEST).pipe(ops.to_list())
    assert sleeps.delays == [] and len(gemini.requests) == 1
    gemini.replies.clear()
    gemini.push(exhausted("30s"), GReply(events=GEMINI_TEXT))
    out = await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert out[-1].response.text == GEMINI_TEXT_TEXT and sleeps.delays == [30.0]


async def test_an_error_event_without_a_retry_delay_is_retried_with_backoff(bus: EventBus) -> None:
    """Anthropic's overloaded_error event (after a 200, before any content) carries no retry_after at all."""
    overloaded = asse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    async with AnthropicServer() as server:
        server.push(GReply(events=[ANTHROPIC_TEXT[0], overloaded]), GReply(events=ANTHROPIC_TEXT))
        sleeps = Sleeps()
        provider = AnthropicProvider(
            "claude-sonnet-4-5",
            api_key=server.api_key,
            base_url=server.url,
            bus=bus,
            backoff_base=0.5,
            retry_jitter=0.0,
            sleep=sleeps,
        )
        out = await provider.stream(REQUEST).pipe(ops.to_list())
        await provider.aclose()
    assert out[-1].response.text == ANTHROPIC_TEXT_TEXT and sleeps.delays == [0.5] and len(server.requests) == 2


# ---------------------------------------------------------------- debug output: what is cut where


async def test_debug_cuts_an_error_body_at_2000_characters(server: OpenAIServer, bus: EventBus) -> None:
    body = "".join(f"{i:05d} " for i in range(600))  # 3600 characters, each position different
    server.push(Reply(status=400, body=body))
    lines: list[str] = []
    provider, _ = make(server, bus, debug=lines.append)
    with pytest.raises(ProviderError):
        await provider.chat(REQUEST)
    await provider.aclose()
    assert lines[1] == f"<- HTTP 400 {body[:2000]}"


async def test_debug_cuts_a_request_at_4000_bytes_even_inside_a_character(server: OpenAIServer, bus: EventBus) -> None:
    lines: list[str] = []
    provider, _ = make(server, bus, debug=lines.append)
    for pad in ("", "a"):  # one of the two puts byte 4000 inside a two-byte character
        request = ChatRequest(messages=[Message.user(pad + "é" * 3000)])
        data = orjson.dumps(provider.build_request(request, stream=False).body)
        try:
            data[:4000].decode()
        except UnicodeDecodeError:
            break
    else:
        pytest.fail("no cut inside a character")
    await provider.chat(request)
    await provider.aclose()
    assert lines[0].endswith(" " + data[:4000].decode(errors="replace")) and lines[0].endswith("\ufffd")


# ---------------------------------------------------------------- the session


def test_the_production_session_caches_dns_for_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long-lived clients follow a provider's DNS changes: aiohttp's default keeps an address 10 s, None forever."""
    seen: dict[str, Any] = {}

    class Connector(aiohttp.TCPConnector):
        def __init__(self, **kw: Any) -> None:
            seen.update(kw)
            super().__init__(**kw)

    monkeypatch.setattr(aiohttp, "TCPConnector", Connector)

    async def make_one() -> None:
        await default_session(HTTPOptions(max_concurrency=5)).close()

    asyncio.run(make_one())
    assert seen == {"limit": 5, "ttl_dns_cache": 300}


def test_aclose_from_another_loop_drops_a_dead_loops_session() -> None:
    """A loop closed without asyncio.run's shutdown leaves its session open; aclose from the next loop must
    close its connections without awaiting anything of the dead loop."""
    client = HttpClient()

    async def use() -> aiohttp.ClientSession:
        return client.session()

    loop = asyncio.new_event_loop()
    try:
        first = loop.run_until_complete(use())
    finally:
        loop.close()
    connector = first.connector
    assert connector is not None and not first.closed
    asyncio.run(client.aclose())
    assert connector.closed and first.closed and client.closed


class NoRetryAfter(OpenAIProvider):
    """A provider whose error mapping ignores the Retry-After it is given (a custom provider may)."""

    def http_error(self, status: int, body: str, retry_after: float | None) -> ProviderHTTPError:
        return RateLimitError(f"{self.name}: HTTP {status}", provider=self.name, status=status)


async def test_the_retry_after_header_applies_when_the_error_has_none_of_its_own(
    server: OpenAIServer, bus: EventBus
) -> None:
    server.push(Reply(status=429, body={"error": {"message": "slow"}}, headers={"Retry-After": "3"}), Reply())
    sleeps = Sleeps()
    provider = NoRetryAfter(
        "gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=bus, sleep=sleeps
    )
    assert not hasattr(provider.http_error(429, "", 3.0), "retry_after")
    response = await provider.chat(REQUEST)
    await provider.aclose()
    assert response.text == "ok" and sleeps.delays == [3.0]


async def test_a_callers_accept_header_wins_in_any_case(server: OpenAIServer, bus: EventBus) -> None:
    """Header names are case-insensitive: an "Accept" given by the user is not overridden on a stream (it was, by
    the client's own lower-case "accept", which aiohttp sent last)."""
    provider, _ = make(server, bus, headers={"Accept": "text/event-stream, application/json"})
    await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert server.requests[0].headers["Accept"] == "text/event-stream, application/json"


async def test_an_error_status_with_a_plain_text_body_is_an_http_error(gemini: GeminiServer, bus: EventBus) -> None:
    """A 400 from a proxy, not JSON: the status decides, not whether the body parses."""
    gemini.push(GReply(status=400, body=b"Bad Request", headers={"Content-Type": "text/plain"}))
    provider, sleeps = make_gemini(gemini, bus)
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.stream(REQUEST).pipe(ops.to_list())
    await provider.aclose()
    assert type(caught.value) is ProviderHTTPError and caught.value.status == 400  # type: ignore[attr-defined]
    assert str(caught.value) == "gemini: HTTP 400: Bad Request" and sleeps.delays == []


async def test_debug_shows_the_headers_that_are_not_secret(server: OpenAIServer, bus: EventBus) -> None:
    lines: list[str] = []
    provider, _ = make(server, bus, debug=lines.append, headers={"X-Team": "blue"})
    await provider.chat(REQUEST)
    await provider.aclose()
    assert "'X-Team': 'blue'" in lines[0] and "'content-type': 'application/json'" in lines[0]


def test_dropping_a_dead_loops_session_survives_a_connector_that_fails_to_close() -> None:
    """The drop reaches into aiohttp's private BaseConnector._close; should that raise (or be gone after an
    upgrade), the session is still detached and the next loop gets a new one."""

    class Stubborn(aiohttp.TCPConnector):
        def _close(self, *args: Any, **kwargs: Any) -> Any:
            super()._close(*args, **kwargs)
            raise RuntimeError("cannot close")

    client = HttpClient(session_factory=lambda options: aiohttp.ClientSession(connector=Stubborn()))

    async def use() -> aiohttp.ClientSession:
        return client.session()

    loop = asyncio.new_event_loop()
    try:
        first = loop.run_until_complete(use())
    finally:
        loop.close()
    second = asyncio.run(use())
    assert second is not first and first.closed and second.closed
