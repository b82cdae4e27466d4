"""Price tables (US dollars per million tokens) and cost totals.

Every provider computes a :class:`~rxkit.types.CostInfo` for each response
from its table; a model id matches its longest listed prefix, so
``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``. Prices change:
override them per provider with ``prices=``::

    OpenAIProvider("gpt-4o", prices={"gpt-4o": Price(input=2.0, output=8.0, cached_input=0.5)})

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
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from rxkit.providers.base import Price
from rxkit.telemetry.events import EventBus, ProviderCallCompleted, default_bus

__all__ = [
    "ANTHROPIC_PRICES",
    "GEMINI_PRICES",
    "OPENAI_PRICES",
    "CostTracker",
    "Totals",
    "conversation",
    "current_conversation",
    "price_for",
]

# Standard (non-batch) rates from the providers' pricing pages; cached_input is
# the cache-read rate. Long-context tiers are not modelled: the default tier is used.
OPENAI_PRICES: dict[str, Price] = {
    "gpt-5.5": Price(5.00, 30.00, 0.50),
    "gpt-5.4": Price(2.50, 15.00, 0.25),
    "gpt-5.4-mini": Price(0.75, 4.50, 0.075),
    "gpt-5.4-nano": Price(0.20, 1.25, 0.02),
    "gpt-5.2": Price(1.75, 14.00, 0.175),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o1": Price(15.00, 60.00, 7.50),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}

# Anthropic bills cache writes (5-minute lifetime) at 1.25x the input rate, cache reads at 0.1x.
ANTHROPIC_PRICES: dict[str, Price] = {
    "claude-opus-4-6": Price(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-5": Price(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4": Price(15.00, 75.00, 1.50, 18.75),
    "claude-sonnet-4-6": Price(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08, 1.00),
    "claude-3-opus": Price(15.00, 75.00, 1.50, 18.75),
    "claude-3-haiku": Price(0.25, 1.25, 0.03, 0.3125),
}

GEMINI_PRICES: dict[str, Price] = {
    "gemini-3.1-pro": Price(2.00, 12.00, 0.20),
    "gemini-3-pro": Price(2.00, 12.00, 0.20),
    "gemini-2.5-pro": Price(1.25, 10.00, 0.125),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.03),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.01),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
    "gemini-1.5-pro": Price(1.25, 5.00, 0.3125),
    "gemini-1.5-flash": Price(0.075, 0.30, 0.01875),
}


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    """The price of ``model`` in ``table``: an exact entry, else the longest matching prefix.

    >>> price_for("gpt-4o-mini-2024-07-18", OPENAI_PRICES).input
    0.15
    """
    price = table.get(model)
    if price is not None:
        return price
    key = max((k for k in table if model.startswith(k)), key=len, default=None)
    return table[key] if key is not None else None


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

    def add(self, event: ProviderCallCompleted) -> None:
        self.calls += 1
        self.input_tokens += event.input_tokens
        self.output_tokens += event.output_tokens
        self.cached_input_tokens += event.cached_input_tokens
        self.cost += event.cost


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
