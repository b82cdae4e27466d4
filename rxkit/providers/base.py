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
from rxkit.providers.pricing import Price, maintained_price, price_for
from rxkit.telemetry.events import CostUnknown, EventBus, default_bus
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
    # (response_format json_schema), "json_schema_strict" (the same with "strict": true and a
    # strict-compatible schema, as OpenAI's structured outputs take it), "json_object_schema"
    # (llama.cpp's {"type": "json_object", "schema": ...} grammar), "forced_tool" (a tool the
    # model must call); "" prompts and parses.
    structured_output: str = ""


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

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo | None:
        """The cost of ``usage`` on ``model`` (default: the provider's), None if it has no known price."""
        ...

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
    prices: ClassVar[dict[str, Price]] = {}  # the class's own prices (user prices win over them)
    # The provider's id in genai-prices ("openai", "anthropic", "google"); None: only given prices apply.
    price_source: str | None = None
    free: ClassVar[bool] = False  # a model that costs nothing to run (mock, local): $0, not unknown
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
        self._price_cache: dict[str, Price | None] = {}
        self.bus = bus if bus is not None else default_bus
        if self.price_source and self.model:
            # Now, not at the end of the first answer: loading the price data takes about 0.5 s once per
            # process, which must not stall a running event loop (later look-ups take under 1 ms).
            self.price()

    def params(self, request: ChatRequest) -> dict[str, Any]:
        params = merge_params(request, self.defaults)
        params.setdefault("model", self.model)
        return params

    def price(self, model: str | None = None) -> Price | None:
        """``model``'s price: given ``prices`` (exact or longest prefix), else the maintained
        price data (:func:`~rxkit.providers.pricing.maintained_price`), else None, with one
        :class:`~rxkit.telemetry.events.CostUnknown` event per model. Cached per model.

        >>> BaseProvider("my-model", prices={"my-": Price(1.0, 2.0)}).price().output
        2.0
        """
        model = model or self.model
        try:
            return self._price_cache[model]
        except KeyError:
            pass
        price = price_for(model, self.pricing)
        if price is None and self.price_source:
            price = maintained_price(self.price_source, model)
        if price is None and type(self).free:
            price = Price(0.0, 0.0)
        self._price_cache[model] = price
        if price is None:
            reason = f"not in genai-prices ({self.price_source})" if self.price_source else "no prices= given"
            self.bus.publish(CostUnknown(provider=self.name, model=model, reason=reason))
        return price

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo | None:
        """Cost of ``usage`` (None for a model with no known price: see :meth:`price`)."""
        price = self.price(model)
        return price.cost(usage) if price is not None else None

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
