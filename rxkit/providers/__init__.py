"""Model providers: one protocol, a registry, and the built-in implementations.

Adding a provider
-----------------

A server that takes JSON over HTTP and streams Server-Sent Events needs a
subclass of :class:`~rxkit.providers.http.HTTPProvider` with two methods:
``build_request`` (the URL, headers and body of a call) and ``parse_event``
(one SSE event into the call's accumulator), registered under a type name.
The whole provider for "echo-sse", a made-up API (``POST /echo`` answered
with ``event: token`` / ``data: {"t": "..."}`` lines and one ``event: done``
/ ``data: {"usage": {"in": 3, "out": 5}}``)::

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

Then ``create_provider({"type": "echo-sse", "base_url": "http://...", "api_key": "..."})``
builds it, and ``provider.stream(request)`` is a hot observable of
``TextDelta``, then ``EndOfTurn`` with the ``ChatResponse`` (text, usage,
cost, timing).

What the provider does not write, because the base class and the
:class:`~rxkit.providers.client.HttpClient` it holds (``provider.client``)
do it: the pooled aiohttp session (one per event loop, closed by
``aclose()``), the concurrency limit, retries with backoff and jitter that
honour Retry-After on 429/5xx before the first token (never on
400/401/403/404), the connect, request, first-token and idle deadlines, the
provider events on the bus, typed and redacted errors (an error status with
a JSON body ``{"detail": ...}``, ``{"error": {"message": ...}}`` or
``{"message": ...}`` becomes ``AuthenticationError``, ``RateLimitError``,
``ProviderServerError``, ...), cost from ``prices``, and the SSE decoding:
:class:`rxkit.sse.SSEDecoder` (WHATWG rules) cuts the body into
:class:`~rxkit.sse.SSEEvent` objects as bytes arrive, and ``parse_event``
runs for each one inside aiohttp's read callback, so keep it to
``json.loads`` and picking fields. A stream that ends without
``finish_reason`` set is a ``StreamInterruptedError`` that keeps the partial
text.

More hooks, all optional: ``acc.tool(key, id, name, arguments)`` and
``acc.tool_done(key)`` assemble streamed tool calls; ``parse_response(body,
acc)`` parses a non-streaming answer for ``chat()`` (without it ``chat()``
collects the stream); ``http_error(status, body, retry_after)`` maps an
error shape of the server's own. See :mod:`rxkit.providers.http`.

Testing it: run a loopback ``aiohttp.web`` server that speaks the protocol,
and pass the client's seams instead of patching anything:
``EchoSSEProvider(..., sleep=record)`` receives the retry delays instead of
waiting them, and ``session_factory=`` supplies the transport (any
``aiohttp.ClientSession``). ``tests/providers/test_custom_provider.py`` is
this example with such a server: streamed text, usage, an HTTP error with a
JSON body, a retry, a mid-stream disconnect.
"""

from rxkit.providers.base import GLOBAL_DEFAULTS, BaseProvider, Capabilities, Price, Provider, merge_params
from rxkit.providers.registry import (
    ProviderSpec,
    create_provider,
    load_specs,
    provider_types,
    register_provider,
    spec_from_env,
)

__all__ = [
    "GLOBAL_DEFAULTS",
    "BaseProvider",
    "Capabilities",
    "Price",
    "Provider",
    "ProviderSpec",
    "create_provider",
    "load_specs",
    "merge_params",
    "provider_types",
    "register_provider",
    "spec_from_env",
]
