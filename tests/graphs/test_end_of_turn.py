"""The voice graph's end of turn: Smart Turn by default, silence without the turn extra (said once), or by choice."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.audio.turn_model import SMART_TURN_HINT, SmartTurn
from rxkit.audio.wav import read_wav, write_wav
from rxkit.elements import AudioFrame, SpeechStopped, Transcript
from rxkit.errors import ConfigError, MissingExtraError
from rxkit.graphs import TurnDetection, VoiceSettings, voice_graph
from rxkit.providers.mock import MockProvider
from rxkit.telemetry.events import EventBus, TurnModelMissing
from rxkit.testing import ano_leaks

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"


def question(tmp_path: Path) -> Path:
    """A complete sentence (0890) and 2 s of a quiet noise floor after it."""
    speech = np.frombuffer(read_wav(LIBRIVOX.format("0890")).pcm, dtype=np.int16)
    noise = np.random.default_rng(14).normal(0, 33, 32000).astype(np.int16)
    path = tmp_path / "question.wav"
    write_wav(path, AudioFrame(np.concatenate([speech, noise]).tobytes(), 16000, 1))
    return path


def without_turn_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.files

    def files(name: str) -> Any:
        if name == "pipecat-ai":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "files", files)


async def test_by_default_the_model_ends_a_complete_turn_and_silence_can_be_chosen(
    tmp_path: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS]
) -> None:
    stt, tts = engines
    path = question(tmp_path)
    heard: dict[str, tuple[str, list[str]]] = {}
    for choice in (None, "silence"):
        async with ano_leaks():
            graph = voice_graph(
                MockProvider(), source=path, sink=tmp_path / "r.wav", stt=stt, tts=tts, end_of_turn=choice
            )
            assert graph.end_of_turn == (choice or "smart-turn")
            out = await graph.arun()
            graph.close()
        reasons = [e.reason for e in out if isinstance(e, SpeechStopped)]
        heard[graph.end_of_turn] = (next(e.text for e in out if isinstance(e, Transcript) and e.final), reasons)
    assert heard["smart-turn"][1] == ["end_of_turn_model"] and heard["silence"][1] == ["silence"]
    # The turn is whole either way (pocketsphinx may hear a word differently the second time, warm).
    ours, theirs = heard["smart-turn"][0].split(), heard["silence"][0].split()
    assert len(set(ours) & set(theirs)) >= 0.8 * len(theirs) and abs(len(ours) - len(theirs)) <= 1


def test_without_the_turn_extra_the_default_is_silence_and_says_how_to_get_the_model(
    tmp_path: Path, engines: tuple[PocketSphinxSTT, Pyttsx3TTS], monkeypatch: pytest.MonkeyPatch
) -> None:
    stt, tts = engines
    without_turn_extra(monkeypatch)
    bus = EventBus()
    graph = voice_graph(MockProvider(), source=question(tmp_path), sink=tmp_path / "r.wav", stt=stt, tts=tts, bus=bus)
    assert graph.end_of_turn == "silence" and graph.turn_model is None
    bus.flush()
    (missing,) = bus.events(TurnModelMissing)
    assert missing.hint == SMART_TURN_HINT and "pip install 'rxkit[turn]'" in missing.hint
    # Asked for by name, it is an error that says the same.
    with pytest.raises(MissingExtraError, match=r"rxkit\[turn\]"):
        voice_graph(
            MockProvider(),
            source=question(tmp_path),
            sink=tmp_path / "r.wav",
            stt=stt,
            tts=tts,
            end_of_turn="smart-turn",
        )
    # Silence by choice: no event.
    quiet = EventBus()
    voice_graph(
        MockProvider(),
        source=question(tmp_path),
        sink=tmp_path / "r.wav",
        stt=stt,
        tts=tts,
        bus=quiet,
        end_of_turn="silence",
    )
    quiet.flush()
    assert quiet.events(TurnModelMissing) == []


def test_the_settings_pick_the_silence_and_the_threshold() -> None:
    defaults = TurnDetection()
    assert (defaults.stop_ms, defaults.vad_stop_ms, defaults.incomplete_stop_ms) == (700, 200, 1500)
    model = TurnDetection(end_of_turn_threshold=0.8).end_of_turn_model()
    assert isinstance(model, SmartTurn) and model.threshold == 0.8
    assert TurnDetection(end_of_turn="silence").end_of_turn_model() is None
    settings = VoiceSettings.from_data({"turn_detection": {"end_of_turn": "silence", "vad_stop_ms": 150}})
    assert settings.turn_detection.end_of_turn == "silence" and settings.turn_detection.vad_stop_ms == 150
    with pytest.raises(ConfigError, match=r"turn_detection\.end_of_turn"):
        VoiceSettings.from_data({"turn_detection": {"end_of_turn": "vibes"}})
    with pytest.raises(ConfigError, match=r"turn_detection\.end_of_turn_threshold"):
        VoiceSettings().with_options(end_of_turn_threshold=1.5)
