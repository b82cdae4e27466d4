"""Fixtures for the audio tests: a private PulseAudio server (see tests/audio/pulse.py) and test recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")
"""Real recorded speech from Debian's pocketsphinx-testdata: 16 kHz mono, with transcripts."""


@pytest.fixture(scope="session")
def librivox() -> list[Path]:
    """Five read sentences from LibriVox (16 kHz mono WAV), transcripts in librivox/transcription."""
    files = sorted((SPEECH_DIR / "librivox").glob("*.wav"))
    if not files:
        pytest.fail("pocketsphinx-testdata is not installed: run `bash .ci/setup`")
    return files
