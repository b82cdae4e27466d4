"""Fixtures shared by the graph tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[PocketSphinxSTT, Pyttsx3TTS]]:
    """A warm recogniser and a synthesizer, shared by one module's tests (they carry no state between turns)."""
    stt, tts = PocketSphinxSTT(), Pyttsx3TTS()
    yield stt, tts
    tts.close()
    stt.close()
