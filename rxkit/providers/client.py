"""The HTTP client an HTTP provider holds: connections, concurrency, retries, deadlines.

One :class:`HttpClient` per provider owns everything about talking to a
server that is not the server's own format:

* the pooled ``aiohttp.ClientSession``, made on first use and per event loop
  (a second ``asyncio.run`` gets a new one; the old loop's is dropped, and a
  loop that ends closes its own, see :func:`rxkit.scheduling.close_when_loop_ends`),
  closed by :meth:`~HttpClient.aclose`;
* the concurrency limit (``max_concurrency`` calls in flight);
* the retry policy: backoff with jitter that honours Retry-After on
  429/5xx and network errors before the first token, never 400/401/403/404;
* the deadlines: connect, the whole call (``request_timeout``: streaming
  or not, retries included; ``None`` disables it), time to first token and
  idle time between events (the watchdog; SSE comments such as
  ``: keep-alive`` are not progress). A deadline that passes cancels the
  call: its response is closed, its concurrency slot freed, and the caller
  gets a :class:`~rxkit.errors.ProviderTimeoutError` naming the limit;
* the provider events on the bus (started, first token, completed, failed).

The provider supplies the format through :class:`Endpoint` (build the
request, parse an SSE event or a body, map an error). Two seams replace the
outside world in tests: ``sleep`` (the backoff waits) and ``session_factory``
(the transport: any ``aiohttp.ClientSession``, e.g. one with its own
connector or resolver)::

    delays = []

    async def sleep(seconds):
        delays.append(seconds)          # record the backoff, wait for none

    client = HttpClient(HTTPOptions(max_retries=3), sleep=sleep)
    # or, the provider making its own client with these seams:
    provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, max_retries=3, sleep=sleep)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from rxkit.errors import (
    ConfigError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeoutError,
    StreamInterruptedError,
    names_a_secret,
    redact,
)
from rxkit.providers._exchange import Endpoint, HTTPRequest, Watchdog, read_body, read_stream
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers._retry import RetryPolicy, is_retryable_status, parse_retry_after
from rxkit.scheduling import close_when_loop_ends
from rxkit.telemetry.events import ProviderCallFailed, ProviderCallStarted
from rxkit.types import ChatRequest, ChatResponse

__all__ = [
    "Endpoint",
    "HTTPOptions",
    "HTTPRequest",
    "OPTION_FIELDS",
    "HttpClient",
    "SessionFactory",
    "default_session",
    "is_secret_header",
]

_NET_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


def is_secret_header(name: str) -> bool:
    """True for a header whose value must never be shown: the providers' own, and any whose name says it
    carries a credential (gateways have their own: x-portkey-api-key, ...)."""
    return name.lower() in _SECRET_HEADERS or names_a_secret(name)


@dataclass(frozen=True, slots=True)
class HTTPOptions:
    """Reliability knobs of an HTTP provider (seconds; ``None`` disables a timeout).

    ``request_timeout`` is the whole call's deadline, streaming or not, from
    the start to the answer's end, retries and their backoff included;
    ``ttft_timeout`` bounds the wait for the first token and ``idle_timeout``
    the gap between events after it (SSE comments do not count). Any of
    them can be set per provider, e.g.
    ``OpenAIProvider("gpt-4o-mini", request_timeout=120)`` or
    ``request_timeout=None`` for a stream with no overall limit.
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    retry_jitter: float = 0.5
    ttft_timeout: float | None = 120.0
    idle_timeout: float | None = 60.0
    connect_timeout: float | None = 10.0
    request_timeout: float | None = 600.0
    max_concurrency: int = 64

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_retries, self.backoff_base, self.backoff_max, self.max_retry_after, self.retry_jitter
        )


OPTION_FIELDS = frozenset(f.name for f in dataclasses.fields(HTTPOptions))

SessionFactory = Callable[[HTTPOptions], aiohttp.ClientSession]


def default_session(options: HTTPOptions) -> aiohttp.ClientSession:
    """The production transport: a pooled TCP connector sized to ``max_concurrency``, connect timeout set."""
    connector = aiohttp.TCPConnector(limit=options.max_concurrency, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=options.connect_timeout, connect=options.connect_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


_call_ids = itertools.count(1)


class HttpClient:
    """Sends a provider's calls: see the module docstring.

    ``sleep`` waits out a retry's backoff (default :func:`asyncio.sleep`);
    ``session_factory(options)`` makes the session, once per event loop
    (default :func:`default_session`). Both are public attributes.
    """

    def __init__(
        self,
        options: HTTPOptions | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        session_factory: SessionFactory = default_session,
    ) -> None:
        self.options = options or HTTPOptions()
        self.retry = self.options.retry_policy()
        self.sleep = sleep
        self.session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: Any = None  # close_when_loop_ends' handle: the session goes when its loop does

    def __repr__(self) -> str:
        return f"HttpClient({self.options!r})"

    @property
    def closed(self) -> bool:
        """True when no session is open (before the first call, and after :meth:`aclose`)."""
        return self._session is None or self._session.closed

    def session(self) -> aiohttp.ClientSession:
        """The pooled session of the running event loop (made on first use; a new loop gets a new one)."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed and self._loop is loop:
            return session
        if session is not None and not session.closed:
            # Used from a new event loop (e.g. a second asyncio.run): the old
            # loop's sockets cannot be awaited any more; drop them quietly.
            _drop_session(session)
        self._session = session = self.session_factory(self.options)
        self._semaphore = asyncio.Semaphore(self.options.max_concurrency)
        self._loop = loop
        self._closer = close_when_loop_ends(functools.partial(_close_session, session))
        return session

    async def aclose(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        session, self._session = self._session, None
        self._closer = None
        if session is not None and not session.closed:
            if self._loop is asyncio.get_running_loop():
                await session.close()
            else:  # its loop has ended (each blocking call runs one): its sockets went with it
                _drop_session(session)

    async def call(
        self, p: Endpoint, request: ChatRequest, acc: StreamAccumulator, *, stream: bool = True
    ) -> ChatResponse:
        """Make one call for provider ``p``: events, retries, timeouts, then parse into ``acc`` and finish it.

        This is a :class:`~rxkit.providers._hot.HotStream` runner:
        ``HotStream(client.call, p.name, (p, request))``.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        start = loop.time()
        call_id = f"{p.name}-{next(_call_ids)}"
        model = str(p.params(request).get("model") or p.model)
        acc.model = model
        bus = p.bus
        bus.publish(ProviderCallStarted(provider=p.name, model=model, call_id=call_id))
        dog = Watchdog(loop, task, p, acc, call_id, start, self.options.idle_timeout if stream else None)
        dog.arm_deadline(self.options.request_timeout)
        acc.on_first_token = dog.on_first_token
        try:
            http = p.build_request(request, stream=stream)
            return await self._send(p, http, acc, dog, start, call_id, stream)
        except asyncio.CancelledError:
            dog.close()
            if dog.reason is None:  # disposed by the subscribers: nobody to tell but the bus
                _publish_failed(p, call_id, acc, start, "cancelled", "Cancelled")
                raise
            task.uncancel()
            error = ProviderTimeoutError(
                f"{p.name}: {dog.reason}", provider=p.name, partial=acc.partial, reason=dog.reason
            )
            _publish_failed(p, call_id, acc, start, error.message, type(error).__name__)
            raise error from None
        except ProviderError as exc:
            _publish_failed(p, call_id, acc, start, exc.message, type(exc).__name__)
            raise
        except ConfigError as exc:
            _publish_failed(p, call_id, acc, start, exc.message, type(exc).__name__)
            raise
        except Exception as exc:  # anything else becomes a typed, redacted error
            wrapped = ProviderError(f"{p.name}: {type(exc).__name__}: {exc}", provider=p.name)
            _publish_failed(p, call_id, acc, start, wrapped.message, type(wrapped).__name__)
            if isinstance(exc, aiohttp.ClientError):
                # Not chained: aiohttp's errors hold the request's headers (request_info), the key among them,
                # and error reporters walk the chain.
                raise wrapped from None
            raise wrapped from exc
        finally:
            dog.close()
            acc.on_first_token = None  # break the acc <-> watchdog cycle: a finished call leaves no cyclic garbage

    async def _send(
        self,
        p: Endpoint,
        http: HTTPRequest,
        acc: StreamAccumulator,
        dog: Watchdog,
        start: float,
        call_id: str,
        stream: bool,
    ) -> ChatResponse:
        options = self.options
        session = self.session()
        semaphore = self._semaphore
        assert semaphore is not None
        data = orjson.dumps(http.body)
        headers = {"content-type": "application/json", **p.extra_headers, **http.headers}
        if stream and not any(name.lower() == "accept" for name in headers):  # a caller's Accept, any case, wins
            headers["accept"] = "text/event-stream"
        if p.debug is not None:
            _debug_request(p, http, headers, data)
        policy = self.retry
        attempt = 0
        while True:
            delay: float | None = None
            got_response = False
            dog.arm_ttft(options.ttft_timeout if stream else None)
            async with semaphore:
                try:
                    # Redirects are not followed: aiohttp drops only Authorization on a cross-host redirect,
                    # so x-api-key / x-goog-api-key would go to whatever host the redirect names.
                    async with session.request(
                        http.method, http.url, data=data, headers=headers, allow_redirects=False
                    ) as resp:
                        got_response = True
                        if 300 <= resp.status < 400:
                            where = resp.headers.get("location", "?")
                            raise ProviderError(
                                f"{p.name}: HTTP {resp.status} redirect to {where} not followed (the API key is not "
                                f"sent to another address); set base_url to the address that answers",
                                provider=p.name,
                            )
                        if resp.status >= 400:
                            body = await resp.text(errors="replace")
                            if p.debug is not None:
                                p.debug(redact(f"<- HTTP {resp.status} {body[:2000]}"))
                            retry_after = parse_retry_after(resp.headers)
                            error = p.http_error(resp.status, body, retry_after)
                            if attempt >= policy.max_retries or not is_retryable_status(resp.status):
                                raise error
                            delay = policy.delay(attempt, getattr(error, "retry_after", retry_after))
                            if delay > policy.max_retry_after:
                                raise error
                        elif stream:
                            try:
                                return await read_stream(p, resp, acc, dog, start, call_id)
                            except ProviderHTTPError as exc:
                                # An error event before any content (Anthropic's overloaded_error
                                # after a 200) is retried like the same HTTP status would be.
                                retryable = is_retryable_status(exc.status) and attempt < policy.max_retries
                                if acc.emitted or not retryable:
                                    raise
                                delay = policy.delay(attempt, getattr(exc, "retry_after", None))
                                if delay > policy.max_retry_after:  # as for a Retry-After header
                                    raise
                        else:
                            return await read_body(p, resp, acc, start, call_id)
                except (*_NET_ERRORS, TimeoutError) as exc:
                    # A timeout once the server has answered is not retried: it
                    # would only make the caller wait that long again.
                    timed_out_late = isinstance(exc, TimeoutError) and got_response
                    if acc.emitted or attempt >= policy.max_retries or timed_out_late:
                        raise _network_error(p, exc, acc, got_response) from None
                    delay = policy.delay(attempt, None)
            dog.stop()
            attempt += 1
            acc.reset()
            await self.sleep(delay)


def _publish_failed(p: Endpoint, call_id: str, acc: StreamAccumulator, start: float, error: str, kind: str) -> None:
    try:
        duration = asyncio.get_running_loop().time() - start
    except RuntimeError:
        duration = 0.0
    p.bus.publish(
        ProviderCallFailed(
            provider=p.name,
            model=acc.model,
            call_id=call_id,
            error=redact(error),
            error_type=kind,
            duration_s=duration,
        )
    )


def _network_error(p: Endpoint, exc: BaseException, acc: StreamAccumulator, got_response: bool) -> ProviderError:
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError(f"{p.name}: timed out: {detail}", provider=p.name, partial=acc.partial)
    if got_response:
        return acc.stream_error(f"connection lost mid-stream ({detail})", StreamInterruptedError)
    return ProviderError(f"{p.name}: cannot reach {p.base_url}: {detail}", provider=p.name)


def _debug_request(p: Endpoint, http: HTTPRequest, headers: dict[str, str], data: bytes) -> None:
    assert p.debug is not None
    shown = {k: ("***" if is_secret_header(k) else v) for k, v in headers.items()}
    p.debug(redact(f"-> {http.method} {http.url} {shown} {data[:4000].decode(errors='replace')}"))


def _drop_session(session: aiohttp.ClientSession) -> None:
    """Forget a session whose event loop has ended (nothing of it can be awaited any more).

    aiohttp has no public way to close a connector without awaiting: this
    reaches into ``BaseConnector._close`` (tests/providers/test_client.py and
    tests/test_dependency_internals.py fail by name if an upgrade moves it);
    ``detach()`` then makes the session look closed.
    """
    connector = session.connector
    with contextlib.suppress(Exception):
        if connector is not None:
            connector._close()
    session.detach()


async def _close_session(session: aiohttp.ClientSession) -> None:
    if not session.closed:
        await session.close()
