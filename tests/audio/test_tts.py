"""Text-to-speech with pyttsx3 + espeak-ng: real synthesis, no files, no threads left."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxkit.audio.tts import Pyttsx3TTS
from rxkit.errors import AudioError, ConfigError
from rxkit.testing import no_leaks

SENTENCE = "Hello there, this is a test sentence."


def rms(pcm: bytes) -> float:
    import numpy as np

    a = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(a * a))) if len(a) else 0.0


def seconds(tts: Pyttsx3TTS, pcm: bytes) -> float:
    return len(pcm) / 2 / tts.sample_rate


@pytest.fixture(scope="module")
def tts() -> Iterator[Pyttsx3TTS]:
    engine = Pyttsx3TTS()
    yield engine
    engine.close()


def test_a_sentence_becomes_non_silent_pcm_of_plausible_length(tts: Pyttsx3TTS) -> None:
    pcm = tts.synthesize(SENTENCE)
    assert tts.sample_rate == 22_050 and tts.channels == 1
    assert len(pcm) % 2 == 0
    assert 1.0 < seconds(tts, pcm) < 4.0  # 7 words at about 200 words a minute: 2.0 s measured
    assert rms(pcm) > 500  # speech, not silence (full-scale is 32767)
    assert seconds(tts, tts.synthesize("Hi.")) < seconds(tts, pcm)


async def test_synthesis_runs_off_the_event_loop_and_in_order(tts: Pyttsx3TTS) -> None:
    texts = [f"Sentence number {n}." for n in range(5)] + ["A much longer sentence, with many more words in it."]
    results = await asyncio.gather(*(tts.asynthesize(t) for t in texts))
    assert all(rms(pcm) > 500 for pcm in results)  # every one complete, none lost
    assert seconds(tts, results[-1]) > 1.5 * max(seconds(tts, r) for r in results[:-1])


def test_repeated_sentences_are_all_whole(tts: Pyttsx3TTS) -> None:
    # pyttsx3 cancels queued espeak-ng work in runAndWait; before rxkit waited for espeak-ng to
    # be idle, about 1 sentence in 20 came back empty and rate changes were lost.
    lengths = [seconds(tts, tts.synthesize(SENTENCE)) for _ in range(20)]
    assert min(lengths) > 0.95 * max(lengths)


def test_rate_and_voice_settings(tts: Pyttsx3TTS) -> None:
    normal = seconds(tts, tts.synthesize(SENTENCE))
    with Pyttsx3TTS(rate=300) as fast, Pyttsx3TTS(rate=100, voice="en-us") as slow:
        assert fast.rate == 300 and slow.voice == "gmw/en-us"  # a language code resolves to the voice id
        for _ in range(3):  # interleaved: each instance gets its own settings back every time
            assert seconds(fast, fast.synthesize(SENTENCE)) < 0.8 * normal
            assert seconds(slow, slow.synthesize(SENTENCE)) > 1.5 * normal
            assert abs(seconds(tts, tts.synthesize(SENTENCE)) - normal) < 0.1 * normal
    with Pyttsx3TTS(voice="ko") as korean:
        assert rms(korean.synthesize("안녕하세요. 반갑습니다.")) > 500


def test_voices_are_listed(tts: Pyttsx3TTS) -> None:
    voices = tts.voices()
    assert len(voices) > 10
    assert any(v.id == "gmw/en-us" and "en-us" in v.languages for v in voices)


def test_unknown_voice_and_bad_settings_are_config_errors() -> None:
    with no_leaks():
        with pytest.raises(ConfigError, match="voice='no-such-voice'"):
            Pyttsx3TTS(voice="no-such-voice")
        with pytest.raises(ConfigError, match="rate"):
            Pyttsx3TTS(rate=5)
        with pytest.raises(ConfigError, match="volume"):
            Pyttsx3TTS(volume=2.0)


def test_nothing_to_say_gives_no_audio(tts: Pyttsx3TTS) -> None:
    assert tts.synthesize("") == b""
    assert tts.synthesize(" ... ") == b""


def test_no_files_are_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # make tempfile look at TMPDIR again
    monkeypatch.chdir(tmp_path)
    system_tmp = set(os.listdir("/tmp"))
    with Pyttsx3TTS() as engine:
        for n in range(3):
            assert rms(engine.synthesize(f"Sentence {n} is spoken now.")) > 500
    assert list(private_tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert not {n for n in set(os.listdir("/tmp")) - system_tmp if n.endswith(".wav")}


def test_no_threads_after_close() -> None:
    with no_leaks():
        engine = Pyttsx3TTS()
        assert any(t.name == "rxkit-tts-pyttsx3" for t in threading.enumerate())
        assert engine.synthesize("One more.")
        engine.close()
        engine.close()  # idempotent
    with pytest.raises(AudioError, match="closed"):
        engine.synthesize("Too late.")


def test_missing_espeak_ng_is_a_clear_error() -> None:
    # A fresh interpreter where the espeak-ng library cannot be loaded, as on a machine without it.
    script = (
        "import ctypes\n"
        "real = ctypes.cdll.LoadLibrary\n"
        "def load(name, *a, **k):\n"
        "    if 'espeak' in str(name): raise OSError(f'{name}: cannot open shared object file')\n"
        "    return real(name, *a, **k)\n"
        "ctypes.cdll.LoadLibrary = load\n"
        "from rxkit.audio.tts import Pyttsx3TTS\n"
        "from rxkit.errors import AudioError\n"
        "import threading\n"
        "try:\n"
        "    Pyttsx3TTS()\n"
        "except AudioError as e:\n"
        "    print('AudioError:', e)\n"
        "print('threads:', len(threading.enumerate()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "AudioError: espeak-ng is not installed" in out.stdout
    assert "apt install espeak-ng" in out.stdout
    assert "threads: 1" in out.stdout  # the worker was stopped again
