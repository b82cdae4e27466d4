"""One HTTP exchange of a provider call: the request, what the call needs from its provider, and the answer read.

:class:`HTTPRequest` is what a provider builds; :class:`Endpoint` is what
:class:`~rxkit.providers.client.HttpClient` needs from the provider it
serves (``HTTPProvider`` is one). The rest reads the answer: the
:class:`Watchdog` (time to first token, idle time), :class:`StreamSink`
(SSE bytes -> the provider's ``parse_event``, run inside aiohttp's
``data_received`` when pushed, see :mod:`._push`), :func:`read_stream`,
:func:`read_body` and :func:`complete` (the :class:`~rxkit.types.ChatResponse`
and its event). The client sends; this module reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from rxkit.errors import MalformedEventError, ProviderError, ProviderHTTPError, StreamInterruptedError, redact
from rxkit.providers._hot import StreamAccumulator
from rxkit.providers._push import can_push, push_off, push_on
from rxkit.providers.pricing import current_conversation
from rxkit.sse import SSEDecoder, SSEEvent
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, ProviderFirstToken
from rxkit.types import ChatRequest, ChatResponse, CostInfo, Message, Usage

__all__ = [
    "PARSE_ERRORS",
    "Endpoint",
    "HTTPRequest",
    "StreamSink",
    "Watchdog",
    "complete",
    "read_body",
    "read_stream",
]

# What a parser raises on a malformed event (a missing key, a wrong type, bad JSON).
PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One HTTP call: where, which headers (auth included), and the JSON body."""

    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # carries the key: never printed
    body: dict[str, Any] = field(default_factory=dict)
    method: str = "POST"


class Endpoint(Protocol):
    """What a call needs from the provider it serves (read at call time: a provider may rename itself).

    :class:`~rxkit.providers.http.HTTPProvider` is one; a provider written
    from scratch around an :class:`~rxkit.providers.client.HttpClient` must
    have these too.
    """

    name: str
    model: str
    base_url: str
    bus: EventBus
    extra_headers: dict[str, str]
    debug: Callable[[str], None] | None

    def params(self, request: ChatRequest) -> dict[str, Any]: ...

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest: ...

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool: ...

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None: ...

    def http_error(self, status: int, body: str, retry_after: float | None) -> ProviderHTTPError: ...

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo | None: ...


class Watchdog:
    """Cancels the call's task when the first token or the next event is late, or when the whole
    call outlasts its deadline, and tells the bus when the first token came (:meth:`on_first_token`,
    the accumulator's hook).

    Two timers per call: the watch (first token, then idle time) and the
    deadline (:meth:`arm_deadline`, the whole call, retries included). The
    watch is re-armed only when it fires: an event costs one clock read
    (``last``), not a timer reschedule. Only whole events count as progress:
    SSE comments (``: keep-alive``) never move ``last``.
    """

    __slots__ = (
        "acc",
        "call_id",
        "deadline_handle",
        "handle",
        "idle",
        "idle_after_first",
        "last",
        "loop",
        "p",
        "reason",
        "start",
        "task",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        p: Endpoint,
        acc: StreamAccumulator,
        call_id: str,
        start: float,
        idle_after_first: float | None,
    ) -> None:
        self.loop = loop
        self.task = task
        self.p = p
        self.acc = acc
        self.call_id = call_id
        self.start = start
        self.idle_after_first = idle_after_first  # the idle timeout once streaming (None: not watched)
        self.handle: asyncio.TimerHandle | None = None
        self.deadline_handle: asyncio.TimerHandle | None = None
        self.reason: str | None = None
        self.idle: float | None = None
        self.last = 0.0

    def on_first_token(self) -> None:
        p, acc = self.p, self.acc
        self.first_token(self.idle_after_first)
        ttft = (acc.first_token_at or self.start) - self.start
        p.bus.publish(ProviderFirstToken(provider=p.name, model=acc.model, call_id=self.call_id, ttft_s=ttft))

    def arm_deadline(self, timeout: float | None) -> None:
        """Cancel the call ``timeout`` seconds after its start, whatever it is doing (``None``: never)."""
        if timeout is not None:
            self.deadline_handle = self.loop.call_at(
                self.start + timeout, self._fire, f"no complete answer within {timeout:g} s (request_timeout)"
            )

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
        if self.reason is not None:  # one cancel per call: the task uncancels once
            return
        self.reason = reason
        self.close()
        self.task.cancel()

    def stop(self) -> None:
        """Stop the watch (first token, idle); the deadline goes on (a retry is still the same call)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def close(self) -> None:
        """Stop both timers: the call is over."""
        self.stop()
        if self.deadline_handle is not None:
            self.deadline_handle.cancel()
            self.deadline_handle = None


class StreamSink:
    """Decodes and parses a streamed body as it arrives; resolves ``finished`` with True
    (the provider's end marker), False (the body ended) or the error. Never raises:
    it runs inside aiohttp's ``data_received`` when pushed (see :mod:`._push`)."""

    __slots__ = ("acc", "debug", "decode", "dog", "finished", "keepalive", "now", "parse")

    def __init__(self, p: Endpoint, acc: StreamAccumulator, dog: Watchdog, finished: asyncio.Future[bool]) -> None:
        self.decode = SSEDecoder().feed
        self.parse = p.parse_event
        self.acc = acc
        self.dog = dog
        self.now = dog.loop.time
        self.debug = p.debug
        self.finished = finished
        # Event types that only keep the connection open (Anthropic's ``ping``): like comments, not progress.
        self.keepalive: frozenset[str] = getattr(p, "keepalive_events", frozenset())

    def feed(self, data: bytes) -> None:
        finished = self.finished
        if finished.done():  # over (or cancelled): the rest is not ours
            return
        acc = self.acc
        event: SSEEvent | None = None
        try:
            events = self.decode(data)
            if events:  # progress is a whole event: comments, keep-alive events and part-events are not
                keepalive = self.keepalive
                if not keepalive or any(e.event not in keepalive for e in events):
                    self.dog.last = self.now()
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
        except PARSE_ERRORS as exc:
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


async def _pull(content: aiohttp.StreamReader, sink: StreamSink, finished: asyncio.Future[bool]) -> bool:
    """The plain way (a reader that cannot be pushed): read what arrived, feed it, until the sink is done."""
    while not finished.done():
        chunk = await content.readany()
        if not chunk:
            sink.eof()
            break
        sink.feed(chunk)
    return finished.result()


async def read_stream(
    p: Endpoint, resp: aiohttp.ClientResponse, acc: StreamAccumulator, dog: Watchdog, start: float, call_id: str
) -> ChatResponse:
    if "json" in resp.headers.get("content-type", ""):  # a server that ignored stream=true
        return await read_body(p, resp, acc, start, call_id)
    finished: asyncio.Future[bool] = dog.loop.create_future()
    sink = StreamSink(p, acc, dog, finished)
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
        content_type = resp.headers.get("content-type", "")
        if "event-stream" not in content_type:  # say what came: a proxy's HTML page is not a dropped stream
            raise acc.stream_error(
                f"the server answered HTTP {resp.status} with content type {content_type or 'none'!r} where an "
                f"event stream (text/event-stream) was expected, and no answer: is base_url the API's address?",
                StreamInterruptedError,
            )
        raise acc.stream_error("the stream ended before the answer did", StreamInterruptedError)
    response = complete(p, acc, start, call_id, streamed=True)
    acc.finish(response)
    dog.close()  # answered: no timer may turn the drain below into a failure
    if done and not content.at_eof():
        # Read the rest (normally just the chunked-encoding terminator) so the
        # connection goes back to the pool; subscribers already have their answer.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                while await content.readany():
                    pass
    return response


async def read_body(
    p: Endpoint, resp: aiohttp.ClientResponse, acc: StreamAccumulator, start: float, call_id: str
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
    except PARSE_ERRORS as exc:
        raise acc.stream_error(
            f"malformed response ({type(exc).__name__}: {exc}): {text[:200]}", MalformedEventError, line=text[:1000]
        ) from None
    response = complete(p, acc, start, call_id, streamed=False)
    acc.finish(response)
    return response


def complete(p: Endpoint, acc: StreamAccumulator, start: float, call_id: str, *, streamed: bool) -> ChatResponse:
    acc.finish_tools()
    acc.finish_reasoning()
    loop = asyncio.get_running_loop()
    end = loop.time()
    # A whole answer read at once has no time to first token.
    ttft = acc.first_token_at - start if acc.first_token_at is not None and streamed else None
    output_tokens = acc.output_tokens
    input_tokens = acc.input_tokens
    estimated = False
    if output_tokens is None and streamed:
        # Servers that send no usage when streaming (llama.cpp) send one token per chunk: count them.
        output_tokens, estimated = len(acc.parts), True
    if input_tokens is None and acc.estimated_input_tokens is not None:
        input_tokens, estimated = acc.estimated_input_tokens, True  # counted before the call (a tokenizer)
    usage = Usage(
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cached_input_tokens=acc.cached_input_tokens or 0,
        cache_write_tokens=acc.cache_write_tokens or 0,
        reasoning_tokens=acc.reasoning_tokens or 0,
        estimated=estimated,
    )
    cost = p.cost(usage, acc.model)
    message = Message.assistant(acc.partial, list(acc.tool_calls))
    if acc.reasoning_parts:  # reasoning first: Anthropic wants the signed thinking ahead of the tool calls
        message = Message(role="assistant", content=[*acc.reasoning_parts, *message.content])
    response = ChatResponse(
        message=message,
        model=acc.model,
        provider=p.name,
        finish_reason=acc.finish_reason,
        usage=usage,
        cost=cost,
        latency_s=end - start,
        ttft_s=ttft,
        response_id=acc.response_id,
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
            cost=cost.total if cost is not None else None,
            cost_estimated=usage.estimated,
            conversation=current_conversation.get(),
        )
    )
    return response
