"""A scripted provider for tests, demos and ``rxkit chat --provider mock``.

>>> import reactivex.operators as ops
>>> mock = MockProvider(["Hello there"])
>>> elements = mock.stream(ChatRequest(messages=[Message.user("hi")])).pipe(ops.to_list()).run()
>>> [type(e).__name__ for e in elements]
['TextDelta', 'TextDelta', 'EndOfTurn']
>>> elements[-1].response.text, mock.requests[0].messages[0].text
('Hello there', 'hi')

Each call to :meth:`MockProvider.stream` plays the next scripted response
(a string, a :class:`MockResponse`, an exception, or a function of the
request returning one of those); when the script runs out, it echoes the
user's last message. Latency is simulated on the scheduler (virtual time in
tests); with zero latency everything is emitted synchronously on subscribe.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reactivex import Observable, abc

from rxkit.elements import Element, EndOfTurn, TextDelta, ToolCallElement
from rxkit.errors import ConfigError, ProviderError, RxkitError, StreamInterruptedError
from rxkit.providers._timed import Step, TimedStream
from rxkit.providers.base import BaseProvider, Capabilities, Price
from rxkit.providers.registry import ProviderSpec, register_provider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, ChatResponse, Message, ToolCall, Usage

__all__ = ["MockProvider", "MockResponse"]


@dataclass(frozen=True)
class MockResponse:
    """One scripted answer.

    ``chunks`` gives the stream pieces explicitly; otherwise ``text`` is cut
    into words (or ``chunk_size`` characters). ``error`` fails the call
    before the chunk numbered ``error_at_chunk`` (default: before the first);
    ``error_at_chunk`` alone fails it with a :class:`StreamInterruptedError`.
    Latencies are seconds; ``None`` takes the provider's.
    """

    text: str = ""
    chunk_size: int | None = None
    chunks: Sequence[str] | None = None
    tool_calls: Sequence[ToolCall] = ()
    usage: Usage | None = None
    error_at_chunk: int | None = None
    error: Exception | None = None
    first_token_latency: float | None = None
    chunk_latency: float | None = None
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.chunks is not None:
            joined = "".join(self.chunks)
            if self.text and self.text != joined:
                raise ConfigError(f"MockResponse text {self.text!r} differs from its chunks joined {joined!r}")
            object.__setattr__(self, "text", joined)
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"MockResponse chunk_size must be at least 1, not {self.chunk_size}")
        for name in ("first_token_latency", "chunk_latency"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"MockResponse {name} must not be negative, not {value}")
        if self.error_at_chunk is not None and self.error_at_chunk < 0:
            raise ConfigError(f"MockResponse error_at_chunk must not be negative, not {self.error_at_chunk}")
        calls = tuple(c if isinstance(c, ToolCall) else ToolCall.model_validate(c) for c in self.tool_calls)
        object.__setattr__(self, "tool_calls", calls)


Scripted = str | MockResponse | Exception | Callable[[ChatRequest], Any]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


class MockProvider(BaseProvider):
    """A provider that plays a script of responses and records every request it gets."""

    type = "mock"
    capabilities = Capabilities(tools=True, vision=True, json_mode=True)
    free = True  # $0 unless prices= are given

    def __init__(
        self,
        responses: Iterable[Scripted] = (),
        *,
        model: str = "mock",
        name: str | None = None,
        chunk_size: int | None = None,
        first_token_latency: float = 0.0,
        chunk_latency: float = 0.0,
        defaults: dict[str, Any] | None = None,
        prices: dict[str, Price] | None = None,
        bus: EventBus | None = None,
        scheduler: abc.SchedulerBase | None = None,
        max_recorded: int = 1_000,
    ) -> None:
        super().__init__(model, name=name, defaults=defaults, prices=prices, bus=bus)
        self.chunk_size = chunk_size
        self.first_token_latency = first_token_latency
        self.chunk_latency = chunk_latency
        self.scheduler = scheduler
        self._script: list[Scripted] = []
        self._next = 0
        self._requests: deque[ChatRequest] = deque(maxlen=max_recorded)
        self.script(*responses)

    def script(self, *responses: Scripted) -> MockProvider:
        """Queue more responses after the ones not yet played."""
        for r in responses:
            if not isinstance(r, (str, MockResponse, Exception)) and not callable(r):
                raise ConfigError(f"a mock response must be a str, MockResponse, exception or function, not {r!r}")
        self._script.extend(responses)
        return self

    @property
    def requests(self) -> list[ChatRequest]:
        """The requests received, oldest first (the last ``max_recorded``)."""
        return list(self._requests)

    @property
    def remaining(self) -> int:
        """Scripted responses not yet played."""
        return len(self._script) - self._next

    def stream(self, request: ChatRequest) -> Observable[Element]:
        """A hot stream of the next scripted answer; the script advances on first subscription."""
        picked: list[MockResponse] = []

        def begin() -> list[Step]:
            self._requests.append(request)
            if not picked:
                picked.append(self._pick(request))
            return self._steps(request, picked[0])

        return TimedStream(self, begin, scheduler=self.scheduler)

    def _pick(self, request: ChatRequest) -> MockResponse:
        if self._next >= len(self._script):
            users = [m for m in request.messages if m.role == "user"]
            return MockResponse(users[-1].text if users else "")
        item = self._script[self._next]
        self._next += 1
        if callable(item) and not isinstance(item, (str, MockResponse, Exception)):
            try:
                item = item(request)
            except Exception as exc:  # noqa: BLE001 - a script function's failure fails the call
                item = exc if isinstance(exc, RxkitError) else ProviderError(f"mock script failed: {exc!r}")
        if isinstance(item, str):
            return MockResponse(item)
        if isinstance(item, Exception):
            return MockResponse(error=item)
        if isinstance(item, MockResponse):
            return item
        return MockResponse(error=ConfigError(f"mock script function returned {item!r}"))

    def _steps(self, request: ChatRequest, r: MockResponse) -> list[Step]:
        chunks = list(r.chunks) if r.chunks is not None else _split(r.text, r.chunk_size or self.chunk_size)
        first = self.first_token_latency if r.first_token_latency is None else r.first_token_latency
        gap = self.chunk_latency if r.chunk_latency is None else r.chunk_latency
        items: list[Element] = [TextDelta(c) for c in chunks]
        items += [ToolCallElement(c) for c in r.tool_calls]
        steps: list[Step] = [(first if i == 0 else gap, x) for i, x in enumerate(items)]
        fail_at = r.error_at_chunk if r.error_at_chunk is not None else (0 if r.error is not None else None)
        if fail_at is not None:
            error = r.error or StreamInterruptedError(
                f"mock stream interrupted after {fail_at} chunks",
                provider=self.name,
                partial="".join(chunks[:fail_at]),
            )
            at = min(fail_at, len(steps))
            return [*steps[:at], (first if at == 0 else gap, error)]
        model = self.params(request)["model"]
        usage = r.usage or Usage(
            input_tokens=sum(_tokens(m.text) for m in request.messages), output_tokens=_tokens(r.text), estimated=True
        )
        response = ChatResponse(
            message=Message.assistant(r.text, list(r.tool_calls)),
            model=model,
            provider=self.name,
            finish_reason=r.finish_reason or ("tool_calls" if r.tool_calls else "stop"),
            usage=usage,
            cost=self.cost(usage, model),
        )
        return [*steps, (0.0 if steps else first, EndOfTurn(response))]


def _split(text: str, size: int | None) -> list[str]:
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return _WORDS.findall(text)


def _tokens(text: str) -> int:
    """A rough token count (four characters a token), enough for usage and cost demos."""
    return (len(text) + 3) // 4


def _response_from_config(item: Any, index: int) -> Scripted:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        raise ConfigError(f"mock response {index} must be a string or a mapping, not {item!r}")
    body = dict(item)
    if isinstance(body.get("error"), str):
        body["error"] = ProviderError(body["error"], provider="mock")
    if body.get("usage") is not None:
        body["usage"] = Usage.model_validate(body["usage"])
    try:
        return MockResponse(**body)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid mock response {index}: {exc}") from None


def _from_spec(spec: ProviderSpec) -> MockProvider:
    extra = dict(spec.extra)
    responses = extra.pop("responses", [])
    allowed = {"chunk_size", "first_token_latency", "chunk_latency"}
    unknown = set(extra) - allowed
    if unknown:
        raise ConfigError(f"unknown mock provider options {sorted(unknown)}; known: responses, {', '.join(allowed)}")
    if not isinstance(responses, list):
        raise ConfigError("mock provider option 'responses' must be a list")
    return MockProvider(
        [_response_from_config(r, i) for i, r in enumerate(responses)],
        model=spec.model or "mock",
        name=spec.name,
        defaults=spec.defaults,
        **extra,
    )


register_provider("mock", _from_spec)
