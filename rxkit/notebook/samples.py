"""Real recorded speech shipped inside rxkit, so that the voice notebook needs no file of the machine's.

Two short utterances from CMU's pocketsphinx test data (BSD-2; the notice is
``data/LICENSE`` beside this module), 16 kHz mono 16-bit little-endian PCM.
"""

from __future__ import annotations

from importlib.resources import files

from rxkit.errors import ConfigError

__all__ = ["SPEECH_RATE", "SPEECH_SAMPLES", "speech_sample"]

SPEECH_RATE = 16_000
"""The sample rate of every speech sample (mono, 16-bit)."""

SPEECH_SAMPLES = {
    "goforward": "go forward ten meters",
    "something": "go somewhere and do something",
}
"""Each sample's name and what is said in it."""


def speech_sample(name: str = "goforward") -> bytes:
    """A recording of real speech as raw PCM (16 kHz, mono, 16-bit), by name (see :data:`SPEECH_SAMPLES`).

    >>> pcm = speech_sample("goforward")
    >>> round(len(pcm) / 2 / SPEECH_RATE, 2)  # seconds
    2.79
    """
    if name not in SPEECH_SAMPLES:
        raise ConfigError(f"speech_sample: no sample named {name!r}; the samples are {', '.join(SPEECH_SAMPLES)}")
    return (files(__package__ or "rxkit.notebook") / "data" / f"{name}.raw").read_bytes()
