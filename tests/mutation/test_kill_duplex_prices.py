"""Pins down rxkit.duplex.prices: audio and text priced apart, from genai-prices or the fallback table (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace

import pytest

from rxkit.duplex import prices as prices_module
from rxkit.duplex.prices import FALLBACK_AUDIO_PRICES, AudioPrices, _from_genai_prices, audio_prices


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    audio_prices.cache_clear()
    yield
    audio_prices.cache_clear()


def test_each_kind_of_token_is_priced_at_its_own_rate() -> None:
    p = AudioPrices(
        text_input=1.0, audio_input=10.0, cached_input=0.5, text_output=2.0, audio_output=20.0, cached_audio_input=0.25
    )
    cost = p.cost(1000, 2000, 3000, 4000, 100, 200)
    assert cost.input_cost == pytest.approx((900 * 1.0 + 1800 * 10.0) / 1e6)
    assert cost.output_cost == pytest.approx((3000 * 2.0 + 4000 * 20.0) / 1e6)
    assert cost.cached_input_cost == pytest.approx((100 * 0.5 + 200 * 0.25) / 1e6)
    plain = p.cost(1000, 2000, 3000, 4000)
    assert plain.input_cost == pytest.approx((1000 * 1.0 + 2000 * 10.0) / 1e6) and plain.cached_input_cost == 0.0
    # no cached audio rate: cached audio is read at the cached (text) rate
    same = AudioPrices(cached_input=0.5).cost(0, 200, 0, 0, 0, 200)
    assert same.cached_input_cost == pytest.approx(200 * 0.5 / 1e6) and same.input_cost == 0.0
    assert AudioPrices() == AudioPrices(0.0, 0.0, 0.0, 0.0, 0.0, None)
    assert AudioPrices().cost(5, 5, 5, 5).total == 0.0


def test_a_tiered_or_missing_rate_from_genai_prices() -> None:
    tiered = SimpleNamespace(base=Decimal("3.5"), tiers=[])
    found = SimpleNamespace(
        input_mtok=Decimal("4"),
        input_audio_mtok=tiered,
        cache_read_mtok=Decimal("0.4"),
        output_mtok=Decimal("16"),
        output_audio_mtok=Decimal("64"),
        cache_audio_read_mtok=Decimal("0.3"),
    )
    assert _from_genai_prices(found) == AudioPrices(4.0, 3.5, 0.4, 16.0, 64.0, 0.3)
    bare = SimpleNamespace(input_audio_mtok=Decimal("1"), output_audio_mtok=Decimal("2"))
    assert _from_genai_prices(bare) == AudioPrices(0.0, 1.0, 0.0, 0.0, 2.0, None)
    assert type(_from_genai_prices(bare).audio_input) is float  # type: ignore[union-attr]
    assert _from_genai_prices(SimpleNamespace(input_audio_mtok=Decimal("1"))) is None
    assert _from_genai_prices(SimpleNamespace(output_audio_mtok=Decimal("1"))) is None


def test_genai_prices_first_then_the_longest_fallback_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []

    def maintained(source: str, model: str) -> object | None:
        asked.append((source, model))
        if model == "known-live":
            return SimpleNamespace(input_audio_mtok=Decimal("1"), output_audio_mtok=Decimal("2"))
        if model == "text-only-live":
            return SimpleNamespace(input_mtok=Decimal("1"), output_mtok=Decimal("2"))
        return None

    monkeypatch.setattr(prices_module, "maintained_model_prices", maintained)
    short, long = AudioPrices(audio_output=1.0), AudioPrices(audio_output=2.0)
    monkeypatch.setitem(FALLBACK_AUDIO_PRICES, "text-only", short)
    monkeypatch.setitem(FALLBACK_AUDIO_PRICES, "text-only-live", long)
    monkeypatch.setitem(FALLBACK_AUDIO_PRICES, "known", short)
    assert audio_prices("google", "models/known-live") == AudioPrices(audio_input=1.0, audio_output=2.0)
    assert asked == [("google", "known-live")]  # asked without the models/ prefix
    assert audio_prices("google", "text-only-live-001") is long  # the longest matching key
    assert audio_prices("google", "text-only-live") is long  # genai-prices has no audio rates for it
    assert audio_prices("google", "text-only") is short
    assert audio_prices("google", "other") is None
    assert audio_prices("google", "xknown") is None  # a prefix, not a substring


def test_lookups_are_cached() -> None:
    first = audio_prices("openai", "gpt-realtime")
    assert audio_prices("openai", "gpt-realtime") is first
    assert audio_prices.cache_info().hits == 1
