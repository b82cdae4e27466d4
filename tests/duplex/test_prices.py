"""Duplex sessions price audio and text apart, from genai-prices, a small fallback table, or not at all."""

from __future__ import annotations

import pytest

from rxkit.duplex import GeminiLive, OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply
from rxkit.duplex.prices import FALLBACK_AUDIO_PRICES, AudioPrices, audio_prices
from rxkit.elements import EndOfTurn, Transcript
from rxkit.graph import astream
from rxkit.operators import duplex
from rxkit.providers.pricing import maintained_model_prices
from rxkit.telemetry.events import CostUnknown, EventBus
from tests.duplex.gemini_live_server import API_KEY as GEMINI_KEY
from tests.duplex.gemini_live_server import LiveServer

pytestmark = pytest.mark.timeout(60)


def test_realtime_models_are_priced_from_genai_prices_audio_and_text_apart() -> None:
    assert audio_prices("openai", "gpt-realtime") == AudioPrices(
        text_input=4.0, audio_input=32.0, cached_input=0.4, text_output=16.0, audio_output=64.0, cached_audio_input=0.4
    )
    # a dated id, and cached audio priced at its own rate
    preview = audio_prices("openai", "gpt-4o-realtime-preview-2024-12-17")
    assert preview == AudioPrices(5.0, 40.0, 2.5, 20.0, 80.0, 2.5)
    mini = audio_prices("openai", "gpt-realtime-mini")
    assert mini is not None and (mini.cached_input, mini.cached_audio_input) == (0.06, 0.3)
    live = audio_prices("google", "models/gemini-live-2.5-flash-preview")
    assert live == AudioPrices(text_input=0.5, audio_input=3.0, text_output=2.0, audio_output=12.0)
    assert preview.cost(100, 100, 0, 0, cached_text=100, cached_audio=100).cached_input_cost == pytest.approx(5e-4)


def test_the_fallback_table_holds_only_what_genai_prices_lacks() -> None:
    for model in FALLBACK_AUDIO_PRICES:
        assert maintained_model_prices("google", model) is None, f"{model} is in genai-prices now: drop it"
    assert audio_prices("google", "gemini-2.0-flash-live-001") == AudioPrices(0.35, 2.10, 0.0, 1.50, 8.50)
    # genai-prices has gemini-2.5-flash, but with no audio output: not a price for a speech-to-speech session
    assert audio_prices("google", "gemini-2.5-flash") is None
    assert audio_prices("openai", "my-fine-tuned-realtime") is None


async def test_an_unknown_model_has_no_cost_and_one_cost_unknown_event() -> None:
    async with RealtimeServer() as server:
        server.replies.extend([Reply(text="One.", audio_ms=100), Reply(text="Two.", audio_ms=100)])
        bus = EventBus()
        s = OpenAIRealtime("my-own-realtime", base_url=server.url, api_key=API_KEY, bus=bus)
        out = [x async for x in astream([Transcript("a"), Transcript("b")], through=duplex(s))]
        ends = [x.response for x in out if isinstance(x, EndOfTurn)]
        assert len(ends) == 2 and all(r is not None and r.cost is None for r in ends)
        assert all(r is not None and r.usage.output_tokens == 60 for r in ends)  # usage still counted
        assert s.cost.total == 0.0 and s.prices is None
        bus.flush()
        unknown = [e for e in bus.history if isinstance(e, CostUnknown)]
        assert [(e.provider, e.model) for e in unknown] == [("openai-realtime", "my-own-realtime")]
        assert "genai-prices" in unknown[0].reason


async def test_gemini_live_prices_its_default_model_from_genai_prices() -> None:
    async with LiveServer() as server:
        bus = EventBus()
        s = GeminiLive(base_url=server.url, api_key=GEMINI_KEY, bus=bus)
        out = [x async for x in astream([Transcript("hi")], through=duplex(s))]
        (end,) = [x.response for x in out if isinstance(x, EndOfTurn)]
        # the loopback's usage: 40 text + 80 audio tokens in, 5 text + 45 audio out; $0.5 / $3 in, $2 / $12 out
        assert end is not None and end.cost is not None
        assert end.cost.input_cost == pytest.approx((40 * 0.5 + 80 * 3.0) / 1e6)
        assert end.cost.output_cost == pytest.approx((5 * 2.0 + 45 * 12.0) / 1e6)
        assert s.cost.total == pytest.approx(end.cost.total)
        bus.flush()
        assert not [e for e in bus.history if isinstance(e, CostUnknown)]


def test_given_prices_win_and_a_free_peer_costs_nothing() -> None:
    mine = AudioPrices(audio_output=1.0)
    assert OpenAIRealtime(api_key="sk-test-000000000000", prices=mine).prices is mine

    class Free(OpenAIRealtime):
        free = True
        price_source = None

    bus = EventBus()
    assert Free("local", api_key="sk-test-000000000000", bus=bus).prices == AudioPrices()
    bus.flush()
    assert not [e for e in bus.history if isinstance(e, CostUnknown)]
