"""Audio devices and engines: mic, speaker, WAV files, format conversion, VAD, STT, TTS.

Names load on first use, so ``import rxkit.audio`` needs none of the voice
extras (numpy, sounddevice, webrtcvad) until one of them is touched.

Audio stages carry 16-bit little-endian PCM as ``bytes`` in
:class:`~rxkit.elements.AudioFrame` (every element type lives in :mod:`rxkit.elements`)::

    from rxkit.audio import microphone, speaker, wav_source, list_devices
    from rxkit.operators import vad, turn_detector
    turns = microphone().pipe(vad(), turn_detector())   # SpeechStarted, SpeechStopped, Utterance
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rxkit.extras import extra_imports

# name -> submodule. Add a line per public name (each helper adds its own).
_EXPORTS: dict[str, str] = {
    # devices, mic, speaker, WAV files, conversion, VAD and turn elements (H7)
    "AudioDevice": "devices",
    "FrameConverter": "convert",
    "Microphone": "mic",
    "Resampler": "convert",
    "Speaker": "speaker",
    "Vad": "vad",
    "WavInfo": "wav",
    "find_device": "devices",
    "format_devices": "devices",
    "list_devices": "devices",
    "microphone": "mic",
    "read_wav": "wav",
    "refresh_devices": "devices",
    "resample": "convert",
    "speaker": "speaker",
    "wav_info": "wav",
    "wav_sink": "wav",
    "wav_source": "wav",
    "write_wav": "wav",
}

__all__ = [  # the same names as _EXPORTS (a test checks), spelled out for linters and type checkers
    "AudioDevice",
    "FrameConverter",
    "Microphone",
    "Resampler",
    "Speaker",
    "Vad",
    "WavInfo",
    "find_device",
    "format_devices",
    "list_devices",
    "microphone",
    "read_wav",
    "refresh_devices",
    "resample",
    "speaker",
    "wav_info",
    "wav_sink",
    "wav_source",
    "write_wav",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rxkit.audio' has no attribute {name!r}")
    with extra_imports(f"rxkit.audio.{name}"):  # numpy or sounddevice missing: say which extra to install
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from rxkit.audio.convert import FrameConverter, Resampler, resample
    from rxkit.audio.devices import AudioDevice, find_device, format_devices, list_devices, refresh_devices
    from rxkit.audio.mic import Microphone, microphone
    from rxkit.audio.speaker import Speaker, speaker
    from rxkit.audio.vad import Vad
    from rxkit.audio.wav import WavInfo, read_wav, wav_info, wav_sink, wav_source, write_wav
