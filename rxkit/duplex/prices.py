"""What a speech-to-speech reply costs: audio and text tokens priced apart."""

from __future__ import annotations

from dataclasses import dataclass

from rxkit.types import CostInfo

__all__ = ["AudioPrices"]


@dataclass(frozen=True, slots=True)
class AudioPrices:
    """Prices per million tokens of a speech-to-speech model, audio and text apart (USD)."""

    text_input: float = 0.0
    audio_input: float = 0.0
    cached_input: float = 0.0
    text_output: float = 0.0
    audio_output: float = 0.0

    def cost(
        self, text_in: int, audio_in: int, text_out: int, audio_out: int, cached_text: int = 0, cached_audio: int = 0
    ) -> CostInfo:
        """The cost of one response's tokens; the cached counts are parts of ``text_in`` / ``audio_in``.

        >>> AudioPrices(text_input=4, audio_input=32, audio_output=64).cost(1000, 1000, 0, 1000).total
        0.1
        """
        m = 1e-6
        return CostInfo(
            input_cost=((text_in - cached_text) * self.text_input + (audio_in - cached_audio) * self.audio_input) * m,
            output_cost=(text_out * self.text_output + audio_out * self.audio_output) * m,
            cached_input_cost=(cached_text + cached_audio) * self.cached_input * m,
        )
