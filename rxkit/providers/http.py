"""The base of the HTTP providers (OpenAI, Anthropic, Gemini, ...): a server's format on top of one client.

:class:`HTTPProvider` holds an :class:`~rxkit.providers.client.HttpClient`
(``provider.client``), which does the work every provider shares: one
pooled ``aiohttp.ClientSession`` (closed by :meth:`~HTTPProvider.aclose`), a
concurrency limit, retries with backoff and jitter that honour Retry-After
on 429/5xx before the first token (never on 400/401/403/404), a
time-to-first-token timeout and an idle timeout, typed and redacted errors,
and provider events on the bus. The provider adds hot streams
(:mod:`._hot`), cost, and the server's format.

A provider plugs in with three methods: build the request, parse one SSE
event into the accumulator, and (optionally) parse a non-streaming body::

    import json
    from rxkit.providers.http import HTTPProvider, HTTPRequest

    class EchoProvider(HTTPProvider):
        type = "echo"
        default_base_url = "http://127.0.0.1:8000/v1"
        api_key_env = "ECHO_API_KEY"

        def build_request(self, request, *, stream):
            p = self.params(request)  # request > provider defaults > global defaults
            body = {"model": p["model"], "prompt": request.messages[-1].text, "stream": stream}
            return HTTPRequest(self.url("/complete"), {"authorization": f"Bearer {self.api_key}"}, body)

        def parse_event(self, event, acc):  # hot path: json.loads and pick fields, no pydantic
            if event.data == "[DONE]":
                return True                  # the answer is complete
            d = json.loads(event.data)       # ValueError/KeyError/... -> MalformedEventError
            acc.text(d.get("text", ""))      # emits a TextDelta to every subscriber
            for i, tc in enumerate(d.get("tools", ())):
                acc.tool(i, tc.get("id"), tc.get("name"), tc.get("args", ""))  # fragments
            if d.get("stop"):
                acc.finish_reason = d["stop"]
            if "usage" in d:
                acc.set_usage(d["usage"]["in"], d["usage"]["out"])
            return False

        def parse_response(self, body, acc):  # non-streaming chat(); same accumulator calls
            acc.text(body["text"])
            acc.finish_reason = "stop"

``acc.tool_done(key)`` emits a tool call as soon as it is complete; calls
still open at the end are emitted before ``EndOfTurn``. A parser raises a
:class:`~rxkit.errors.ProviderError` for in-band errors (``acc.stream_error``
builds one that keeps the partial text) and returns True when the stream is
done; a stream that ends at EOF counts as complete only if ``acc.finish_reason``
was set, else it is a :class:`~rxkit.errors.StreamInterruptedError`.

Construction: ``EchoProvider(model, api_key=..., base_url=..., defaults=...,
prices=..., bus=..., options=HTTPOptions(...), max_retries=3, ...)``, and
the client's seams for tests: ``sleep=`` (the retry backoff) and
``session_factory=`` (the transport), see :mod:`rxkit.providers.client`;
``EchoProvider.from_spec(spec)`` builds one from a
:class:`~rxkit.providers.ProviderSpec` (``spec.extra`` holds option fields,
``headers`` and ``prices``).

Optional hooks: ``http_error(status, body, retry_after)`` maps an error
response with a provider's own error shapes; ``run_stream(request, acc)``
may be wrapped to do work before a call (e.g. start a local server). The
call machinery itself (retries, timeouts, events) is in :mod:`.client`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Self

from reactivex import Observable

from rxkit.elements import Element
from rxkit.errors import ConfigError, ProviderHTTPError, register_secret, safe_url
from rxkit.providers._hot import HotStream, StreamAccumulator
from rxkit.providers._retry import http_error
from rxkit.providers.base import BaseProvider, Price
from rxkit.providers.client import (
    OPTION_FIELDS,
    HttpClient,
    HTTPOptions,
    HTTPRequest,
    SessionFactory,
    default_session,
    is_secret_header,
)
from rxkit.sse import SSEEvent
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, ChatResponse

__all__ = ["HTTPOptions", "HTTPProvider", "HTTPRequest", "HttpClient", "SSEEvent", "StreamAccumulator", "http_error"]


class HTTPProvider(BaseProvider):
    """Base of providers that send JSON over HTTP and stream answers as SSE. See the module docstring."""

    default_base_url: ClassVar[str] = ""
    # Read when no base_url is given, the way the provider's official SDK reads it
    # (proxies, gateways, Ollama): an explicit base_url wins.
    base_url_env: ClassVar[str | None] = None
    api_key_env: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = True
    # SSE event types that only keep the connection open: they do not hold off ``idle_timeout``.
    keepalive_events: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        model: str = "",
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        base_url: str | None = None,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        prices: dict[str, Price] | None = None,
        bus: EventBus | None = None,
        options: HTTPOptions | None = None,
        headers: dict[str, str] | None = None,
        debug: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        session_factory: SessionFactory | None = None,
        **option_overrides: Any,
    ) -> None:
        super().__init__(model, name=name, defaults=defaults, prices=prices, bus=bus)
        unknown = set(option_overrides) - OPTION_FIELDS
        if unknown:
            raise ConfigError(
                f"unknown option(s) for provider {self.name!r}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(OPTION_FIELDS))}"
            )
        self.client = HttpClient(
            dataclasses.replace(options or HTTPOptions(), **option_overrides),
            sleep=sleep or asyncio.sleep,
            session_factory=session_factory or default_session,
        )
        env_name = api_key_env or type(self).api_key_env
        self.api_key = api_key or (os.environ.get(env_name) if env_name else None) or None
        register_secret(self.api_key)
        url_env = type(self).base_url_env
        env_url = os.environ.get(url_env) if url_env else None
        self.base_url = (base_url or env_url or type(self).default_base_url).rstrip("/")
        safe_url(self.base_url)  # a password or key in the URL is a secret: no error, log or event shows it
        self.extra_headers = dict(headers or {})
        for key, value in self.extra_headers.items():
            if is_secret_header(key):
                register_secret(value.removeprefix("Bearer ").strip())
        self.debug = debug

    @property
    def options(self) -> HTTPOptions:
        """The client's reliability knobs."""
        return self.client.options

    # -- what a provider implements ----------------------------------------

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        """The HTTP call for ``request`` (URL, headers with auth, JSON body)."""
        raise NotImplementedError

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        """Apply one SSE event to ``acc``; return True when the answer is complete."""
        raise NotImplementedError

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None:
        """Apply a whole non-streaming response body to ``acc`` (optional)."""
        raise NotImplementedError

    def http_error(self, status: int, body: str, retry_after: float | None) -> ProviderHTTPError:
        """The typed error for an HTTP error response (optional: for providers with their own error
        shapes). A retry waits the result's ``retry_after`` when it has one, else the header's."""
        return http_error(self.name, status, body, retry_after)

    # -- helpers for providers ---------------------------------------------

    def url(self, path: str) -> str:
        """``base_url`` joined with ``path``."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def require_key(self) -> str:
        """The API key, or a ConfigError naming where it is looked for."""
        if not self.api_key:
            env = type(self).api_key_env
            where = f" (set {env} or pass api_key)" if env else ""
            raise ConfigError(f"provider {self.name!r} needs an API key{where}")
        return self.api_key

    @classmethod
    def from_spec(cls, spec: Any, **overrides: Any) -> Self:
        """Build from a :class:`~rxkit.providers.ProviderSpec`; ``spec.extra`` holds options."""
        extra = dict(spec.extra)
        prices = extra.pop("prices", None)
        if isinstance(prices, dict):
            try:
                prices = {k: v if isinstance(v, Price) else Price(**v) for k, v in prices.items()}
            except TypeError as exc:
                raise ConfigError(f"invalid prices for provider {spec.name or spec.type!r}: {exc}") from None
        return cls(
            spec.model,
            api_key=spec.api_key,
            api_key_env=spec.api_key_env,
            base_url=spec.base_url,
            name=spec.name,
            defaults=spec.defaults,
            prices=prices,
            **{**extra, **overrides},
        )

    # -- the protocol ------------------------------------------------------

    def stream(self, request: ChatRequest) -> Observable[Element]:
        """A hot observable: TextDelta / ToolCallElement as they arrive, then EndOfTurn."""
        if type(self).run_stream is HTTPProvider.run_stream:  # not wrapped: one coroutine less per call
            return HotStream(self.client.call, self.name, (self, request))
        return HotStream(self.run_stream, self.name, (request,))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """The whole answer, from a non-streaming request when the provider supports it."""
        if type(self).parse_response is HTTPProvider.parse_response:
            return await super().chat(request)
        return await self.client.call(self, request, StreamAccumulator(self.name), stream=False)

    async def run_stream(self, request: ChatRequest, acc: StreamAccumulator) -> None:
        """Run one streaming call into ``acc`` (a subclass may wrap it, e.g. to start a server first)."""
        await self.client.call(self, request, acc, stream=True)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()
