"""Voice activity detection with webrtcvad, and re-framing of arbitrary blocks.

webrtcvad judges frames of exactly 10, 20 or 30 ms of 16-bit mono PCM at
8, 16, 32 or 48 kHz. :class:`Vad` checks that up front (a clear
:class:`~rxkit.errors.ConfigError`, not webrtcvad's bare "Error while
processing frame") and cuts blocks of any size into valid frames, keeping
the remainder for the next block.

>>> vad = Vad(aggressiveness=2, sample_rate=16000, frame_ms=20)
>>> [speech for _, speech in vad.process(b"\\0\\0" * 500)]  # 500 samples: one 320-sample frame, 180 kept
[False]
>>> len(vad.pending)
360
"""

from __future__ import annotations

from typing import Any

from rxkit.errors import ConfigError

__all__ = ["VAD_FRAME_MS", "VAD_SAMPLE_RATES", "Reframer", "Vad", "check_vad_config"]

VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)
"""Sample rates webrtcvad accepts."""

VAD_FRAME_MS = (10, 20, 30)
"""Frame lengths webrtcvad accepts, in milliseconds."""


class Reframer:
    """Cuts a byte stream into chunks of exactly ``size`` bytes.

    Blocks that are already exactly ``size`` (the usual case: a mic block of
    the VAD frame's length) pass through without a copy.

    >>> r = Reframer(4)
    >>> r.push(b"abcdef"), r.push(b"gh"), r.pending
    ([b'abcd'], [b'efgh'], b'')
    """

    __slots__ = ("size", "_buf")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigError(f"frame size must be at least 1 byte, not {size}")
        self.size = size
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the complete chunks now available."""
        size = self.size
        if not self._buf and len(data) == size:
            return [data]
        self._buf += data
        buf = self._buf
        n = len(buf) // size * size
        if n == 0:
            return []
        view = memoryview(buf)
        try:
            out = [bytes(view[i : i + size]) for i in range(0, n, size)]
        finally:
            view.release()  # a bytearray with a live view cannot be resized
        del buf[:n]
        return out

    @property
    def pending(self) -> bytes:
        """The bytes waiting for a full chunk."""
        return bytes(self._buf)

    def clear(self) -> bytes:
        """Take the pending bytes and start over."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def check_vad_config(aggressiveness: int, sample_rate: int, frame_ms: int) -> None:
    """Raise :class:`ConfigError` unless webrtcvad accepts these settings."""
    if aggressiveness not in (0, 1, 2, 3):
        raise ConfigError(
            f"VAD aggressiveness must be 0, 1, 2 or 3 (3 filters out the most non-speech), not {aggressiveness!r}"
        )
    if sample_rate not in VAD_SAMPLE_RATES:
        raise ConfigError(
            f"webrtcvad needs a sample rate of 8000, 16000, 32000 or 48000 Hz, not {sample_rate!r}; "
            "resample first (rxkit.audio.convert.FrameConverter)"
        )
    if frame_ms not in VAD_FRAME_MS:
        raise ConfigError(f"webrtcvad frames must be 10, 20 or 30 ms long, not {frame_ms!r}")


class Vad:
    """webrtcvad on 16-bit mono PCM: judge one frame, or blocks of any size.

    ``aggressiveness`` 0 (least) to 3 (most eager to call audio non-speech).
    """

    __slots__ = ("aggressiveness", "sample_rate", "frame_ms", "frame_bytes", "_vad", "_reframer")

    def __init__(self, aggressiveness: int = 2, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        check_vad_config(aggressiveness, sample_rate, frame_ms)
        import webrtcvad  # the voice extra; imported here so rxkit imports without it

        self.aggressiveness = aggressiveness
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._vad: Any = webrtcvad.Vad(aggressiveness)
        self._reframer = Reframer(self.frame_bytes)

    def is_speech(self, frame: bytes) -> bool:
        """Judge one frame of exactly ``frame_bytes`` bytes."""
        if len(frame) != self.frame_bytes:
            raise ConfigError(
                f"a {self.frame_ms} ms VAD frame at {self.sample_rate} Hz is {self.frame_bytes} bytes, "
                f"not {len(frame)}; use Vad.process() for blocks of other sizes"
            )
        return bool(self._vad.is_speech(frame, self.sample_rate))

    def process(self, pcm: bytes) -> list[tuple[bytes, bool]]:
        """Re-frame ``pcm`` and judge each complete frame: ``[(frame, is_speech), ...]``."""
        vad, rate = self._vad, self.sample_rate
        return [(f, bool(vad.is_speech(f, rate))) for f in self._reframer.push(pcm)]

    @property
    def pending(self) -> bytes:
        """Bytes kept for the next frame."""
        return self._reframer.pending

    def reset(self) -> bytes:
        """Drop the kept bytes (returned) and start a fresh frame."""
        return self._reframer.clear()
