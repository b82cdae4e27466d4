"""The provider protocol every model provider implements.

A provider turns a :class:`~rxkit.types.ChatRequest` into a stream of
elements: :class:`~rxkit.elements.TextDelta` as text arrives,
:class:`~rxkit.elements.ToolCallElement` once a tool call's arguments are
complete, and finally :class:`~rxkit.elements.EndOfTurn` carrying the
:class:`~rxkit.types.ChatResponse` (message, usage, cost, timing). Streams
are hot: one request shared by every subscriber, aborted when the last
one leaves.

Parameters merge in one order everywhere: request fields that are set win
over the provider's ``defaults``, which win over :data:`GLOBAL_DEFAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from reactivex import Observable
from reactivex import operators as ops

from rxkit.elements import Element, EndOfTurn
from rxkit.errors import ProviderError
from rxkit.telemetry.events import EventBus, default_bus
from rxkit.types import ChatRequest, ChatResponse, CostInfo, Usage

__all__ = [
    "GLOBAL_DEFAULTS",
    "BaseProvider",
    "Capabilities",
    "Price",
    "Provider",
    "merge_params",
]

GLOBAL_DEFAULTS: dict[str, Any] = {}
"""Parameters applied to every request unless a provider or request sets them."""

_PARAMS = ("model", "temperature", "max_tokens", "top_p", "stop", "seed", "response_format", "tool_choice")


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = False
    vision: bool = False
    audio: bool = False
    streaming_input: bool = False
    json_mode: bool = False
    # A native structured-output mode, used by typed functions (rxkit.typed): "json_schema"
    # (response_format json_schema), "json_object_schema" (llama.cpp's {"type": "json_object",
    # "schema": ...} grammar), "forced_tool" (a tool the model must call); "" prompts and parses.
    structured_output: str = ""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None  # reading cached input (None: the input rate)
    cache_write: float | None = None  # writing input to the cache (None: the input rate)

    def cost(self, usage: Usage) -> CostInfo:
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        return CostInfo(
            input_cost=((usage.input_tokens - cached - written) * self.input + written * write_rate) / 1e6,
            cached_input_cost=cached * cached_rate / 1e6,
            output_cost=usage.output_tokens * self.output / 1e6,
        )


@runtime_checkable
class Provider(Protocol):
    """What every provider offers."""

    name: str
    model: str
    capabilities: Capabilities

    def stream(self, request: ChatRequest) -> Observable[Element]:
        """A hot observable of the answer's elements, ending with EndOfTurn."""
        ...

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """The whole answer at once."""
        ...

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo: ...

    async def aclose(self) -> None:
        """Release connections and processes."""
        ...


def merge_params(request: ChatRequest, defaults: dict[str, Any]) -> dict[str, Any]:
    """Request fields that are set, over provider ``defaults``, over :data:`GLOBAL_DEFAULTS`."""
    merged = {**GLOBAL_DEFAULTS, **defaults}
    for key in _PARAMS:
        value = getattr(request, key)
        if value is not None:
            merged[key] = value
    merged.update(request.extra)
    return merged


class BaseProvider:
    """Shared plumbing: identity, defaults, pricing, ``chat`` built on ``stream``."""

    type: str = "base"
    capabilities = Capabilities()
    prices: ClassVar[dict[str, Price]] = {}
    # The model used when none is given: a current, fast and cheap one, so that a key alone is enough.
    default_model: ClassVar[str] = ""

    def __init__(
        self,
        model: str = "",
        *,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        prices: dict[str, Price] | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.model = model or type(self).default_model
        self.name = name or self.type
        self.defaults = dict(defaults or {})
        self.pricing: dict[str, Price] = {**type(self).prices, **(prices or {})}
        self.bus = bus if bus is not None else default_bus

    def params(self, request: ChatRequest) -> dict[str, Any]:
        params = merge_params(request, self.defaults)
        params.setdefault("model", self.model)
        return params

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo:
        """Cost of ``usage`` from the pricing table (zero for unknown models)."""
        price = self.pricing.get(model or self.model)
        if price is None:  # longest matching prefix: "gpt-4o-2024-08-06" uses "gpt-4o"
            key = max((k for k in self.pricing if (model or self.model).startswith(k)), key=len, default=None)
            price = self.pricing.get(key) if key else None
        return price.cost(usage) if price else CostInfo()

    def stream(self, request: ChatRequest) -> Observable[Element]:
        raise NotImplementedError

    async def chat(self, request: ChatRequest) -> ChatResponse:
        elements = await self.stream(request).pipe(ops.to_list())
        for element in reversed(elements):
            if isinstance(element, EndOfTurn) and element.response is not None:
                return element.response
        raise ProviderError(f"provider {self.name!r} ended without a response", provider=self.name)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r})"
