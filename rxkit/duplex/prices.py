"""What a speech-to-speech reply costs: audio and text tokens priced apart.

A session's prices come from, in order: the ``prices=`` given; the
maintained ``genai-prices`` data (offline, through
:func:`rxkit.providers.pricing.maintained_model_prices`), which has audio
input and output rates for OpenAI's realtime models (``gpt-realtime``,
``gpt-realtime-mini``, ``gpt-4o-realtime-preview``, ``gpt-4o-mini-realtime-preview``)
and Gemini Live (``gemini-live-2.5-flash``, the 2.5 native-audio previews);
then :data:`FALLBACK_AUDIO_PRICES`, only for the live models genai-prices
lacks. A model in none of them has no cost (``None`` on each reply, never a
silent $0) and its session publishes one
:class:`~rxkit.telemetry.events.CostUnknown` event, as the text providers do.

>>> audio_prices("openai", "gpt-realtime").audio_output
64.0
>>> audio_prices("google", "gemini-2.0-flash-live-001").audio_output
8.5
>>> audio_prices("openai", "my-own-realtime-model") is None
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rxkit.providers.pricing import maintained_model_prices
from rxkit.types import CostInfo

__all__ = ["FALLBACK_AUDIO_PRICES", "AudioPrices", "audio_prices"]


@dataclass(frozen=True, slots=True)
class AudioPrices:
    """Prices per million tokens of a speech-to-speech model, audio and text apart (USD).

    ``cached_audio_input``: reading cached audio input (None: ``cached_input``).
    """

    text_input: float = 0.0
    audio_input: float = 0.0
    cached_input: float = 0.0
    text_output: float = 0.0
    audio_output: float = 0.0
    cached_audio_input: float | None = None

    def cost(
        self, text_in: int, audio_in: int, text_out: int, audio_out: int, cached_text: int = 0, cached_audio: int = 0
    ) -> CostInfo:
        """The cost of one response's tokens; the cached counts are parts of ``text_in`` / ``audio_in``.

        >>> AudioPrices(text_input=4, audio_input=32, audio_output=64).cost(1000, 1000, 0, 1000).total
        0.1
        >>> AudioPrices(cached_input=0.4, cached_audio_input=2.5).cost(100, 100, 0, 0, 100, 100).cached_input_cost
        0.00029
        """
        m = 1e-6
        cached_audio_rate = self.cached_input if self.cached_audio_input is None else self.cached_audio_input
        return CostInfo(
            input_cost=((text_in - cached_text) * self.text_input + (audio_in - cached_audio) * self.audio_input) * m,
            output_cost=(text_out * self.text_output + audio_out * self.audio_output) * m,
            cached_input_cost=(cached_text * self.cached_input + cached_audio * cached_audio_rate) * m,
        )


FALLBACK_AUDIO_PRICES: dict[str, AudioPrices] = {
    # Google's rates for the Live API's 2.0 model (Google's answer on discuss.ai.google.dev, 2025):
    # $0.35 text / $2.10 audio in, $1.50 text / $8.50 audio out.
    "gemini-2.0-flash-live": AudioPrices(text_input=0.35, audio_input=2.10, text_output=1.50, audio_output=8.50),
    # The 2.5 native-audio dialog previews: priced as Gemini 2.5 Flash Native Audio (gemini-live-2.5-flash).
    "gemini-2.5-flash-preview-native-audio-dialog": AudioPrices(
        text_input=0.5, audio_input=3.0, text_output=2.0, audio_output=12.0
    ),
    "gemini-2.5-flash-exp-native-audio-thinking-dialog": AudioPrices(
        text_input=0.5, audio_input=3.0, text_output=2.0, audio_output=12.0
    ),
}
"""Audio prices of the live models that genai-prices lacks (keys match exactly or as the longest prefix)."""


@functools.lru_cache(maxsize=64)
def audio_prices(source: str, model: str) -> AudioPrices | None:
    """``model``'s audio and text prices: genai-prices (provider id ``source``: ``openai``, ``google``), else
    :data:`FALLBACK_AUDIO_PRICES`, else None. A model genai-prices has without audio rates is not priced by it."""
    bare = model.removeprefix("models/")
    found = maintained_model_prices(source, bare)
    if found is not None:
        prices = _from_genai_prices(found)
        if prices is not None:
            return prices
    key = max((k for k in FALLBACK_AUDIO_PRICES if bare.startswith(k)), key=len, default=None)
    return FALLBACK_AUDIO_PRICES[key] if key is not None else None


def _from_genai_prices(prices: Any) -> AudioPrices | None:
    def rate(name: str) -> float | None:
        value = getattr(prices, name, None)
        if value is None:
            return None
        return float(value if isinstance(value, Decimal) else value.base)  # a tiered price: its base rate

    audio_in, audio_out = rate("input_audio_mtok"), rate("output_audio_mtok")
    if audio_in is None or audio_out is None:
        return None  # not a speech-to-speech model's prices
    cached = rate("cache_read_mtok")
    return AudioPrices(
        text_input=rate("input_mtok") or 0.0,
        audio_input=audio_in,
        cached_input=cached or 0.0,
        text_output=rate("output_mtok") or 0.0,
        audio_output=audio_out,
        cached_audio_input=rate("cache_audio_read_mtok"),
    )
