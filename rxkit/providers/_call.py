"""The call machinery behind :class:`~rxkit.providers._http.HTTPProvider`.

:func:`run_call` makes one call: it publishes the provider events, sends the
request through the pooled session under the concurrency limit, retries
429/5xx and network errors before the first token (honouring Retry-After),
watches the time to first token and the idle time, feeds the SSE events to
the provider's ``parse_event`` (or the body to ``parse_response``), and
finishes the accumulator with the :class:`~rxkit.types.ChatResponse`.
Providers do not call it; they implement the hooks on ``HTTPProvider``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from rxkit.errors import (
    ConfigError,
    MalformedEventError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeoutError,
    StreamInterruptedError,
    names_a_secret,
    redact,
)
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers._push import can_push, push_off, push_on
from rxkit.providers._retry import is_retryable_status, parse_retry_after
from rxkit.providers.pricing import current_conversation
from rxkit.sse import SSEDecoder, SSEEvent
from rxkit.telemetry.events import ProviderCallCompleted, ProviderCallFailed, ProviderCallStarted, ProviderFirstToken
from rxkit.types import ChatRequest, ChatResponse, Message, Usage

if TYPE_CHECKING:
    from rxkit.providers._http import HTTPProvider, HTTPRequest

__all__ = ["run_call"]

_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)
_NET_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


def is_secret_header(name: str) -> bool:
    """True for a header whose value must never be shown: the providers' own, and any whose name says it
    carries a credential (gateways have their own: x-portkey-api-key, ...)."""
    return name.lower() in _SECRET_HEADERS or names_a_secret(name)


_call_ids = itertools.count(1)


class _Watchdog:
    """Cancels the call's task when the first token or the next chunk is late, and tells the
    bus when the first token came (:meth:`on_first_token`, the accumulator's hook).

    One timer per call, re-armed only when it fires: a chunk costs one clock
    read (``last``), not a timer reschedule.
    """

    __slots__ = ("acc", "call_id", "handle", "idle", "last", "loop", "p", "reason", "start", "stream", "task")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        p: HTTPProvider,
        acc: StreamAccumulator,
        call_id: str,
        start: float,
        stream: bool,
    ) -> None:
        self.loop = loop
        self.task = task
        self.p = p
        self.acc = acc
        self.call_id = call_id
        self.start = start
        self.stream = stream
        self.handle: asyncio.TimerHandle | None = None
        self.reason: str | None = None
        self.idle: float | None = None
        self.last = 0.0

    def on_first_token(self) -> None:
        p, acc = self.p, self.acc
        self.first_token(p.options.idle_timeout if self.stream else None)
        ttft = (acc.first_token_at or self.start) - self.start
        p.bus.publish(ProviderFirstToken(provider=p.name, model=acc.model, call_id=self.call_id, ttft_s=ttft))

    def arm_ttft(self, timeout: float | None) -> None:
        self.stop()
        self.idle = None
        if timeout is not None:
            self.handle = self.loop.call_later(timeout, self._fire, f"no first token within {timeout:g} s")

    def first_token(self, idle: float | None) -> None:
        self.stop()
        self.idle = idle
        if idle is not None:
            self.last = self.loop.time()
            self.handle = self.loop.call_at(self.last + idle, self._check_idle)

    def _check_idle(self) -> None:
        assert self.idle is not None
        due = self.last + self.idle
        if self.loop.time() + 1e-3 >= due:
            self._fire(f"no data for {self.idle:g} s")
        else:
            self.handle = self.loop.call_at(due, self._check_idle)

    def _fire(self, reason: str) -> None:
        self.handle = None
        self.reason = reason
        self.task.cancel()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def run_call(
    p: HTTPProvider, request: ChatRequest, acc: StreamAccumulator, *, stream: bool = True
) -> ChatResponse:
    """Make one provider call: events, retries, timeouts, then parse into ``acc`` and finish it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    start = loop.time()
    call_id = f"{p.name}-{next(_call_ids)}"
    model = str(p.params(request).get("model") or p.model)
    acc.model = model
    bus = p.bus
    bus.publish(ProviderCallStarted(provider=p.name, model=model, call_id=call_id))
    dog = _Watchdog(loop, task, p, acc, call_id, start, stream)
    acc.on_first_token = dog.on_first_token
    try:
        http = p.build_request(request, stream=stream)
        return await _send(p, http, acc, dog, start, call_id, stream)
    except asyncio.CancelledError:
        dog.stop()
        if dog.reason is None:  # disposed by the subscribers: nobody to tell but the bus
            _publish_failed(p, call_id, acc, start, "cancelled", "Cancelled")
            raise
        task.uncancel()
        error = ProviderTimeoutError(f"{p.name}: {dog.reason}", provider=p.name, partial=acc.partial, reason=dog.reason)
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
        dog.stop()
        acc.on_first_token = None  # break the acc <-> watchdog cycle: a finished call leaves no cyclic garbage


async def _send(
    p: HTTPProvider,
    http: HTTPRequest,
    acc: StreamAccumulator,
    dog: _Watchdog,
    start: float,
    call_id: str,
    stream: bool,
) -> ChatResponse:
    session = p._get_session()
    semaphore = p._semaphore
    assert semaphore is not None
    data = orjson.dumps(http.body)
    headers = {"content-type": "application/json", **p.extra_headers, **http.headers}
    if stream:
        headers.setdefault("accept", "text/event-stream")
    extra: dict[str, Any] = {}
    if not stream:
        extra["timeout"] = aiohttp.ClientTimeout(
            total=p.options.request_timeout, sock_connect=p.options.connect_timeout
        )
    if p.debug is not None:
        _debug_request(p, http, headers, data)
    policy = p._policy
    attempt = 0
    while True:
        delay: float | None = None
        got_response = False
        dog.arm_ttft(p.options.ttft_timeout if stream else None)
        async with semaphore:
            try:
                # Redirects are not followed: aiohttp drops only Authorization on a cross-host redirect,
                # so x-api-key / x-goog-api-key would go to whatever host the redirect names.
                async with session.request(
                    http.method, http.url, data=data, headers=headers, allow_redirects=False, **extra
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
                            return await _read_stream(p, resp, acc, dog, start, call_id)
                        except ProviderHTTPError as exc:
                            # An error event before any content (Anthropic's overloaded_error
                            # after a 200) is retried like the same HTTP status would be.
                            retryable = is_retryable_status(exc.status) and attempt < policy.max_retries
                            if acc.emitted or not retryable:
                                raise
                            delay = policy.delay(attempt, getattr(exc, "retry_after", None))
                    else:
                        return await _read_body(p, resp, acc, start, call_id)
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
        await p._sleep(delay)


class _StreamSink:
    """Decodes and parses a streamed body as it arrives; resolves ``finished`` with True
    (the provider's end marker), False (the body ended) or the error. Never raises:
    it runs inside aiohttp's ``data_received`` when pushed (see :mod:`._push`)."""

    __slots__ = ("acc", "debug", "decode", "dog", "finished", "now", "parse")

    def __init__(self, p: HTTPProvider, acc: StreamAccumulator, dog: _Watchdog, finished: asyncio.Future[bool]) -> None:
        self.decode = SSEDecoder().feed
        self.parse = p.parse_event
        self.acc = acc
        self.dog = dog
        self.now = dog.loop.time
        self.debug = p.debug
        self.finished = finished

    def feed(self, data: bytes) -> None:
        finished = self.finished
        if finished.done():  # over (or cancelled): the rest is not ours
            return
        self.dog.last = self.now()
        acc = self.acc
        event: SSEEvent | None = None
        try:
            events = self.decode(data)
            parse = self.parse
            for event in events:
                if self.debug is not None:
                    self.debug(redact(f"<- event: {event.event} data: {event.data}"))
                done = parse(event, acc)
                if finished.done():  # the last subscriber left inside on_next: the call is being cancelled
                    return
                if done:
                    finished.set_result(True)
                    return
        except MalformedEventError as exc:  # the decoder's (an event over the size limit) or a parser's own
            error: Exception = acc.stream_error(exc.message, MalformedEventError, line="") if event is None else exc
        except _PARSE_ERRORS as exc:
            if event is None:  # not the parser's: a fault of ours, reported as it is
                error = exc
            else:
                line = event.data if len(event.data) <= 1000 else event.data[:1000] + "..."
                short = line if len(line) <= 200 else line[:200] + "..."
                error = acc.stream_error(
                    f"malformed {event.event!r} event ({type(exc).__name__}: {exc}): data: {short}",
                    MalformedEventError,
                    line=line,
                )
        except Exception as exc:  # noqa: BLE001 - the parser's typed errors (error events, blocked answers), a
            error = exc  # debug hook that raised, ...: this runs inside data_received, so it goes to the call
        else:
            return  # every event applied; the stream goes on
        if not finished.done():
            finished.set_exception(error)

    def eof(self) -> None:
        if not self.finished.done():
            self.finished.set_result(False)

    def error(self, exc: BaseException) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)


async def _pull(content: aiohttp.StreamReader, sink: _StreamSink, finished: asyncio.Future[bool]) -> bool:
    """The plain way (a reader that cannot be pushed): read what arrived, feed it, until the sink is done."""
    while not finished.done():
        chunk = await content.readany()
        if not chunk:
            sink.eof()
            break
        sink.feed(chunk)
    return finished.result()


async def _read_stream(
    p: HTTPProvider, resp: aiohttp.ClientResponse, acc: StreamAccumulator, dog: _Watchdog, start: float, call_id: str
) -> ChatResponse:
    if "json" in resp.headers.get("content-type", ""):  # a server that ignored stream=true
        return await _read_body(p, resp, acc, start, call_id)
    finished: asyncio.Future[bool] = dog.loop.create_future()
    sink = _StreamSink(p, acc, dog, finished)
    content = resp.content
    if can_push(content):
        try:
            push_on(content, sink)
            done = await finished
        finally:
            push_off(content)
    else:
        done = await _pull(content, sink, finished)
    if not done and acc.finish_reason is None:
        raise acc.stream_error("the stream ended before the answer did", StreamInterruptedError)
    response = _complete(p, acc, start, call_id, streamed=True)
    acc.finish(response)
    if done and not content.at_eof():
        # Read the rest (normally just the chunked-encoding terminator) so the
        # connection goes back to the pool; subscribers already have their answer.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                while await content.readany():
                    pass
    return response


async def _read_body(
    p: HTTPProvider, resp: aiohttp.ClientResponse, acc: StreamAccumulator, start: float, call_id: str
) -> ChatResponse:
    text = await resp.text(errors="replace")
    if p.debug is not None:
        p.debug(redact(f"<- HTTP {resp.status} {text[:2000]}"))
    try:
        body = json.loads(text)
    except ValueError:
        error = acc.stream_error(f"response is not JSON: {text[:200]}", MalformedEventError, line=text[:1000])
        raise error from None
    if isinstance(body, dict) and body.get("error"):
        raise p.http_error(resp.status if resp.status >= 400 else 500, text, None)
    try:
        p.parse_response(body, acc)
    except NotImplementedError:
        raise ProviderError(f"{p.name}: the server answered JSON to a streaming request") from None
    except _PARSE_ERRORS as exc:
        raise acc.stream_error(
            f"malformed response ({type(exc).__name__}: {exc}): {text[:200]}", MalformedEventError, line=text[:1000]
        ) from None
    response = _complete(p, acc, start, call_id, streamed=False)
    acc.finish(response)
    return response


def _complete(p: HTTPProvider, acc: StreamAccumulator, start: float, call_id: str, *, streamed: bool) -> ChatResponse:
    acc.finish_tools()
    loop = asyncio.get_running_loop()
    end = loop.time()
    # A whole answer read at once has no time to first token.
    ttft = acc.first_token_at - start if acc.first_token_at is not None and streamed else None
    output_tokens = acc.output_tokens
    if output_tokens is None and streamed:
        # Servers that send no usage when streaming (llama.cpp) send one token per chunk: count them.
        output_tokens = len(acc.parts)
    usage = Usage(
        input_tokens=acc.input_tokens or 0,
        output_tokens=output_tokens or 0,
        cached_input_tokens=acc.cached_input_tokens or 0,
        cache_write_tokens=acc.cache_write_tokens or 0,
    )
    cost = p.cost(usage, acc.model)
    response = ChatResponse(
        message=Message.assistant(acc.partial, list(acc.tool_calls)),
        model=acc.model,
        provider=p.name,
        finish_reason=acc.finish_reason,
        usage=usage,
        cost=cost,
        latency_s=end - start,
        ttft_s=ttft,
    )
    p.bus.publish(
        ProviderCallCompleted(
            provider=p.name,
            model=acc.model,
            call_id=call_id,
            duration_s=end - start,
            ttft_s=ttft,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cost=cost.total,
            conversation=current_conversation.get(),
        )
    )
    return response


def _publish_failed(p: HTTPProvider, call_id: str, acc: StreamAccumulator, start: float, error: str, kind: str) -> None:
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


def _network_error(p: HTTPProvider, exc: BaseException, acc: StreamAccumulator, got_response: bool) -> ProviderError:
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError(f"{p.name}: timed out: {detail}", provider=p.name, partial=acc.partial)
    if got_response:
        return acc.stream_error(f"connection lost mid-stream ({detail})", StreamInterruptedError)
    return ProviderError(f"{p.name}: cannot reach {p.base_url}: {detail}", provider=p.name)


def _debug_request(p: HTTPProvider, http: HTTPRequest, headers: dict[str, str], data: bytes) -> None:
    assert p.debug is not None
    shown = {k: ("***" if is_secret_header(k) else v) for k, v in headers.items()}
    p.debug(redact(f"-> {http.method} {http.url} {shown} {data[:4000].decode(errors='replace')}"))
