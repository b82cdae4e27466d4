"""Price tables, user overrides, and cost totals per conversation and session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from reactivex import operators as ops

from rxkit.providers import Price
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.pricing import (
    ANTHROPIC_PRICES,
    GEMINI_PRICES,
    OPENAI_PRICES,
    CostTracker,
    conversation,
    current_conversation,
    price_for,
)
from rxkit.telemetry.events import EventBus, ProviderCallCompleted
from rxkit.types import ChatRequest, Message, Usage
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, recording

REQUEST = ChatRequest(messages=[Message.user("hi")])


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


@pytest.mark.parametrize("table", [OPENAI_PRICES, ANTHROPIC_PRICES, GEMINI_PRICES])
def test_tables_are_sane(table: dict[str, Price]) -> None:
    assert len(table) >= 8
    for model, price in table.items():
        assert 0 < price.input < price.output, model  # output always costs more than input
        assert price.cached_input is None or price.cached_input < price.input, model


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ],
)
def test_longest_prefix_wins(model: str, key: str) -> None:
    table = {**OPENAI_PRICES, **ANTHROPIC_PRICES, **GEMINI_PRICES}
    assert price_for(model, table) is table[key]


def test_unknown_model_costs_nothing() -> None:
    assert price_for("my-finetune", OPENAI_PRICES) is None
    p = OpenAIProvider("my-finetune", api_key="sk-x-000000000000")
    assert p.cost(Usage(input_tokens=10**6, output_tokens=10**6)).total == 0.0


def test_cost_with_cached_tokens_and_user_override() -> None:
    p = OpenAIProvider("gpt-4o", api_key="sk-x-000000000000")
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cached_input_tokens=1_000_000)
    cost = p.cost(usage)
    assert (cost.input_cost, cost.cached_input_cost, cost.output_cost) == pytest.approx((2.5, 1.25, 10.0))
    cheaper = OpenAIProvider("gpt-4o", api_key="sk-x-000000000000", prices={"gpt-4o": Price(1.0, 4.0, 0.1)})
    assert cheaper.cost(usage).total == pytest.approx(1.0 + 0.1 + 4.0)
    assert OPENAI_PRICES["gpt-4o"].input == 2.5  # the shared table is untouched


def test_cache_writes_have_their_own_rate() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_input_tokens=500_000, cache_write_tokens=300_000)
    cost = Price(input=2.0, output=8.0, cached_input=0.2, cache_write=2.5).cost(usage)
    assert cost.input_cost == pytest.approx(0.2 * 2.0 + 0.3 * 2.5)  # 200k uncached, 300k written
    assert cost.cached_input_cost == pytest.approx(0.5 * 0.2)
    assert Price(input=2.0, output=8.0).cost(usage).total == pytest.approx(2.0)  # no cache rates: all input
    haiku = ANTHROPIC_PRICES["claude-haiku-4-5"]
    assert (haiku.input, haiku.cached_input, haiku.cache_write) == (1.00, 0.10, 1.25)
    assert all(p.cache_write == pytest.approx(1.25 * p.input) for p in ANTHROPIC_PRICES.values())
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
