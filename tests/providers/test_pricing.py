"""Maintained prices (genai-prices, offline), user overrides, unknown models, and cost totals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivex import operators as ops

from rxkit.providers import Price
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.mock import MockProvider
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.pricing import (
    CostTracker,
    conversation,
    current_conversation,
    maintained_price,
    price_for,
)
from rxkit.telemetry.events import CostUnknown, EventBus, ProviderCallCompleted
from rxkit.types import ChatRequest, Message, Usage
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, recording

REQUEST = ChatRequest(messages=[Message.user("hi")])


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


OPENAI_MODELS = ["gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "o1"]
ANTHROPIC_MODELS = ["claude-opus-4-1", "claude-sonnet-4-5", "claude-sonnet-4", "claude-haiku-4-5", "claude-3-5-haiku"]
GEMINI_MODELS = ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"]


@pytest.mark.parametrize(
    ("source", "models"), [("openai", OPENAI_MODELS), ("anthropic", ANTHROPIC_MODELS), ("google", GEMINI_MODELS)]
)
def test_maintained_prices_are_sane(source: str, models: list[str]) -> None:
    for model in models:
        price = maintained_price(source, model)
        assert price is not None, model
        assert 0 < price.input < price.output, model  # output always costs more than input
        assert price.cached_input is None or price.cached_input < price.input, model


@pytest.mark.parametrize(
    ("source", "model", "base"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "o3-mini-2025-01-31", "o3-mini"),
        ("openai", "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ],
)
def test_dated_ids_are_priced_as_their_model(source: str, model: str, base: str) -> None:
    assert maintained_price(source, model) == maintained_price(source, base) is not None


@pytest.mark.parametrize(("pro", "base"), [("o1-pro", "o1"), ("o3-pro", "o3"), ("gpt-5-pro", "gpt-5")])
def test_pro_models_are_priced_as_themselves(pro: str, base: str) -> None:
    """A prefix match priced these as their base model (o1-pro costs 10x o1)."""
    p = OpenAIProvider(pro, api_key="sk-x-000000000000")
    cost = p.cost(Usage(input_tokens=10**6, output_tokens=10**6))
    base_price = maintained_price("openai", base)
    assert cost is not None and base_price is not None
    assert cost.total > 2 * (base_price.input + base_price.output)
    assert (p.price() or base_price).input == {"o1-pro": 150.0, "o3-pro": 20.0, "gpt-5-pro": 15.0}[pro]


def test_long_context_tier_applies_to_every_token() -> None:
    sonnet = AnthropicProvider("claude-sonnet-4-5", api_key="k-000000000000")
    short = sonnet.cost(Usage(input_tokens=200_000, output_tokens=1000))
    long = sonnet.cost(Usage(input_tokens=200_001, output_tokens=1000))
    assert short is not None and long is not None
    assert short.total == pytest.approx((200_000 * 3.0 + 1000 * 15.0) / 1e6)
    assert long.total == pytest.approx((200_001 * 6.0 + 1000 * 22.5) / 1e6)


def test_prices_are_read_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """genai-prices' bundled data is used; nothing connects anywhere (its auto-update is never started)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    maintained_price.cache_clear()
    assert maintained_price("google", "gemini-2.5-flash") is not None
    assert GeminiProvider("gemini-2.5-flash-lite", api_key="k-000000000000").price() is not None
    from genai_prices import data_snapshot

    assert data_snapshot.get_snapshot().from_auto_update is False


def test_fine_tuned_models_get_fine_tuned_rates_where_known() -> None:
    """genai-prices knows some fine-tuned rates (2x the base model's): never the base model's price."""
    tuned = maintained_price("openai", "ft:gpt-4o-mini-2024-07-18:my-org::abc123")
    base = maintained_price("openai", "gpt-4o-mini")
    assert tuned is not None and base is not None
    assert (tuned.input, tuned.output) == (0.30, 1.20) and tuned.input > base.input


@pytest.mark.parametrize("model", ["my-finetune", "ft:gpt-4.1-nano-2025-04-14:my-org::abc123"])
def test_unknown_and_fine_tuned_models_have_no_cost_and_one_warning(model: str) -> None:
    bus = EventBus()
    p = OpenAIProvider(model, api_key="sk-x-000000000000", bus=bus)
    assert p.cost(Usage(input_tokens=10**6, output_tokens=10**6)) is None  # not $0
    assert p.cost(Usage(input_tokens=1, output_tokens=1)) is None
    bus.flush()
    [warning] = bus.events(CostUnknown)
    assert (warning.provider, warning.model) == ("openai", model) and "genai-prices" in warning.reason


async def test_unknown_model_over_the_wire_warns_once_per_model(server: OpenAIServer) -> None:
    """Three turns on a compatible server with no prices: three calls with no cost, one warning."""
    bus = EventBus()
    tracker = CostTracker(bus)
    for _ in range(3):
        server.push(Reply(stream=recording("text")))
    provider = OpenAIProvider("my-model", base_url=server.url, api_key=API_KEY, bus=bus)
    try:
        responses = [await provider.chat(REQUEST), *[await provider.stream(REQUEST).pipe(ops.last()) for _ in "ab"]]
    finally:
        await provider.aclose()
    await asyncio.sleep(0)
    bus.flush()
    assert responses[0].cost is None and all(r.response.cost is None for r in responses[1:])  # type: ignore[attr-defined]
    assert [e.cost for e in bus.events(ProviderCallCompleted)] == [None, None, None]
    assert len(bus.events(CostUnknown)) == 1
    assert (tracker.session.calls, tracker.session.unpriced_calls, tracker.total) == (3, 3, 0.0)


def test_price_is_looked_up_once_per_model() -> None:
    maintained_price.cache_clear()
    p = OpenAIProvider("gpt-4.1-mini", api_key="sk-x-000000000000")  # looked up here, before any call
    assert maintained_price.cache_info().misses == 1
    for n in range(50):
        assert p.cost(Usage(input_tokens=n, output_tokens=n)) is not None
    info = maintained_price.cache_info()
    assert info.hits + info.misses == 1


def test_mock_is_free_unless_priced() -> None:
    bus = EventBus()
    cost = MockProvider(bus=bus).cost(Usage(input_tokens=10**6, output_tokens=10**6))
    assert cost is not None and cost.total == 0.0  # a mock costs nothing: $0, not unknown
    priced = MockProvider(prices={"mock": Price(1.0, 2.0)}).cost(Usage(input_tokens=10**6, output_tokens=10**6))
    assert priced is not None and priced.total == pytest.approx(3.0)
    bus.flush()
    assert not bus.events(CostUnknown)


def test_user_prices_match_by_prefix() -> None:
    assert price_for("Qwen/Qwen3-8B", {"Qwen/": Price(1.0, 2.0), "Qwen/Qwen3": Price(3.0, 4.0)}) == Price(3.0, 4.0)
    assert price_for("my-finetune", {"gpt-4o": Price(1.0, 2.0)}) is None


def test_cost_with_cached_tokens_and_user_override() -> None:
    p = OpenAIProvider("gpt-4o", api_key="sk-x-000000000000")
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cached_input_tokens=1_000_000)
    cost = p.cost(usage)
    assert cost is not None
    assert (cost.input_cost, cost.cached_input_cost, cost.output_cost) == pytest.approx((2.5, 1.25, 10.0))
    cheaper = OpenAIProvider("gpt-4o", api_key="sk-x-000000000000", prices={"gpt-4o": Price(1.0, 4.0, 0.1)})
    assert cheaper.cost(usage) == cost.model_copy(
        update={"input_cost": 1.0, "cached_input_cost": 0.1, "output_cost": 4.0}
    )
    assert p.cost(usage) == cost  # the shared prices are untouched


def test_cache_writes_have_their_own_rate() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_input_tokens=500_000, cache_write_tokens=300_000)
    cost = Price(input=2.0, output=8.0, cached_input=0.2, cache_write=2.5).cost(usage)
    assert cost.input_cost == pytest.approx(0.2 * 2.0 + 0.3 * 2.5)  # 200k uncached, 300k written
    assert cost.cached_input_cost == pytest.approx(0.5 * 0.2)
    assert Price(input=2.0, output=8.0).cost(usage).total == pytest.approx(2.0)  # no cache rates: all input
    haiku = maintained_price("anthropic", "claude-haiku-4-5")
    assert haiku is not None and (haiku.input, haiku.cached_input, haiku.cache_write) == (1.00, 0.10, 1.25)
    anthropic = [maintained_price("anthropic", m) for m in ANTHROPIC_MODELS]
    assert all(p is not None and p.cache_write == pytest.approx(1.25 * p.input) for p in anthropic)
    total = usage + Usage(input_tokens=10, cache_write_tokens=4)
    assert (total.input_tokens, total.cache_write_tokens) == (1_000_010, 300_004)


async def test_tracker_totals_per_conversation_provider_and_session(server: OpenAIServer) -> None:
    bus = EventBus()
    tracker = CostTracker(bus)
    for _ in range(3):
        server.push(Reply(stream=recording("text")))  # 14 in / 16 out on gpt-4o-mini
    provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=bus)
    try:
        with conversation("alice"):
            assert current_conversation.get() == "alice"
            await provider.chat(REQUEST)
            await provider.stream(REQUEST).pipe(ops.to_list())
        with conversation("bob"):
            await provider.chat(REQUEST)
        assert current_conversation.get() == ""
    finally:
        await provider.aclose()
    await asyncio.sleep(0)  # the bus delivers on the loop
    bus.flush()
    one = 14 * 0.15e-6 + 16 * 0.60e-6
    assert tracker.session.calls == 3
    assert tracker.total == pytest.approx(3 * one)
    assert tracker.conversation_cost("alice") == pytest.approx(2 * one)
    assert tracker.by_conversation["bob"].output_tokens == 16
    assert tracker.by_provider["openai"].input_tokens == 42
    tracker.close()
    bus.publish(ProviderCallCompleted(provider="openai", cost=1.0))
    bus.flush()
    assert tracker.session.calls == 3  # no longer listening
