"""Model prices (US dollars per million tokens) and cost totals.

Prices come from the maintained ``genai-prices`` package (pydantic's price
data, shipped inside the package: nothing is fetched from the network), looked
up once per model and cached: ``o1-pro`` is priced as itself, a dated id such
as ``gpt-4o-mini-2024-07-18`` as ``gpt-4o-mini``. Long-context tiers (a higher
rate for every token once the input passes a threshold) are kept. User prices
win; their keys match exactly or as the longest prefix::

    OpenAIProvider("gpt-4o", prices={"gpt-4o": Price(input=2.0, output=8.0, cached_input=0.5)})

A model with no known price (a fine-tuned or unknown model, any
OpenAI-compatible server without ``prices=``) has no cost: ``response.cost``
is ``None``, never a silent $0, and the provider publishes one
:class:`~rxkit.telemetry.events.CostUnknown` event per model. A cost computed
from estimated usage says so (``CostInfo.estimated``).

Totals per conversation and per session come from :class:`CostTracker`,
which listens to :class:`~rxkit.telemetry.events.ProviderCallCompleted` events; name
the conversation a call belongs to with :func:`conversation`::

    tracker = CostTracker(bus)
    with conversation("support-42"):
        await provider.chat(request)
    tracker.total, tracker.by_conversation["support-42"]
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rxkit.telemetry.events import EventBus, ProviderCallCompleted, default_bus
from rxkit.types import CostInfo, Usage

__all__ = [
    "CostTracker",
    "Price",
    "Totals",
    "conversation",
    "current_conversation",
    "maintained_model_prices",
    "maintained_price",
    "price_for",
]


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens; ``tiers`` are (input tokens above, Price) from low to high.

    >>> Price(input=1.0, output=4.0).cost(Usage(input_tokens=10**6, output_tokens=10**6)).total
    5.0
    """

    input: float
    output: float
    cached_input: float | None = None  # reading cached input (None: the input rate)
    cache_write: float | None = None  # writing input to the cache (None: the input rate)
    tiers: tuple[tuple[int, Price], ...] = ()  # a long prompt moves every token to a tier's rates

    def cost(self, usage: Usage) -> CostInfo:
        rates = self
        for start, tier in reversed(self.tiers):
            if usage.input_tokens > start:
                rates = tier
                break
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        cached_rate = rates.input if rates.cached_input is None else rates.cached_input
        write_rate = rates.input if rates.cache_write is None else rates.cache_write
        return CostInfo(
            input_cost=((usage.input_tokens - cached - written) * rates.input + written * write_rate) / 1e6,
            cached_input_cost=cached * cached_rate / 1e6,
            output_cost=usage.output_tokens * rates.output / 1e6,
            estimated=usage.estimated,
        )


def price_for(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of ``model`` in a user's ``table``: an exact entry, else the longest matching prefix.

    >>> price_for("Qwen/Qwen3-8B", {"Qwen/": Price(1.0, 2.0)}).input
    1.0
    """
    price = table.get(model)
    if price is not None:
        return price
    key = max((k for k in table if model.startswith(k)), key=len, default=None)
    return table[key] if key is not None else None


@functools.lru_cache(maxsize=256)
def maintained_price(source: str, model: str) -> Price | None:
    """``model``'s current standard price from ``genai-prices`` for provider ``source``
    (its id: ``openai``, ``anthropic``, ``google``), or None if it has none. Offline: the
    package's bundled data is used unless the application itself starts genai-prices'
    ``UpdatePrices``; rxkit never does. Cached per model.

    >>> maintained_price("openai", "o1-pro").input
    150.0
    >>> maintained_price("openai", "ft:gpt-4o-mini:my-org::abc123") is None
    True
    """
    prices = maintained_model_prices(source, model)
    return None if prices is None else _to_price(prices)


def maintained_model_prices(source: str, model: str) -> Any | None:
    """``model``'s current prices as genai-prices has them (its ``ModelPrice``: text, cache, audio, image
    rates per million tokens, each a ``Decimal``, a tiered price or None), or None if it has none.

    >>> maintained_model_prices("openai", "gpt-realtime").output_audio_mtok
    Decimal('64')
    """
    from genai_prices import data_snapshot  # about 0.4 s to load: only when a price is needed

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, source, None)
    except LookupError:
        return None
    return info.get_prices(datetime.now(UTC))


def _to_price(prices: Any) -> Price | None:
    fields = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    values = [getattr(prices, name, None) for name in fields]
    if values[0] is None or values[1] is None:
        return None  # priced by image, request or second: not by tokens
    starts = sorted({t.start for v in values if v is not None and not isinstance(v, Decimal) for t in v.tiers})

    def at(value: Any, start: int) -> float | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return float(value)
        rate = value.base
        for tier in value.tiers:
            if start >= tier.start:
                rate = tier.price
        return float(rate)

    def rates(start: int, tiers: tuple[tuple[int, Price], ...] = ()) -> Price:
        i, o, c, w = (at(v, start) for v in values)
        return Price(float(i or 0), float(o or 0), c, w, tiers)

    return rates(-1, tuple((start, rates(start)) for start in starts))


current_conversation: ContextVar[str] = ContextVar("rxkit_conversation", default="")
"""The conversation the current provider calls belong to (see :func:`conversation`)."""


@contextlib.contextmanager
def conversation(name: str) -> Iterator[None]:
    """Attribute provider calls made inside the block (and tasks started there) to ``name``."""
    token = current_conversation.set(name)
    try:
        yield
    finally:
        current_conversation.reset(token)


@dataclass
class Totals:
    """Summed tokens and cost of some calls."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0  # calls whose model has no known price: not in ``cost``
    estimated: bool = False  # some of ``cost`` was priced from estimated usage

    def add(self, event: ProviderCallCompleted) -> None:
        self.calls += 1
        self.input_tokens += event.input_tokens
        self.output_tokens += event.output_tokens
        self.cached_input_tokens += event.cached_input_tokens
        if event.cost is None:
            self.unpriced_calls += 1
        else:
            self.cost += event.cost
            self.estimated = self.estimated or event.cost_estimated


@dataclass
class CostTracker:
    """Cost totals for the session (everything it saw) and per conversation and provider.

    >>> bus = EventBus(); tracker = CostTracker(bus)
    >>> bus.publish(ProviderCallCompleted(provider="openai", cost=0.25, conversation="c1"))
    >>> bus.flush(); tracker.total, tracker.by_conversation["c1"].calls
    (0.25, 1)
    """

    bus: EventBus = field(default_factory=lambda: default_bus)
    session: Totals = field(default_factory=Totals)
    by_conversation: dict[str, Totals] = field(default_factory=dict)
    by_provider: dict[str, Totals] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._unsubscribe = self.bus.subscribe(self._on_event, ProviderCallCompleted)

    def _on_event(self, event: object) -> None:
        if not isinstance(event, ProviderCallCompleted):
            return
        self.session.add(event)
        self.by_conversation.setdefault(event.conversation, Totals()).add(event)
        self.by_provider.setdefault(event.provider, Totals()).add(event)

    @property
    def total(self) -> float:
        """Session cost in US dollars."""
        return self.session.cost

    def conversation_cost(self, name: str) -> float:
        totals = self.by_conversation.get(name)
        return totals.cost if totals else 0.0

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()
