"""Voice elements: speech tags, turn markers, utterances and playback markers.

Audio stages in rxkit carry 16-bit little-endian interleaved PCM as
``bytes`` in :class:`~rxkit.elements.AudioFrame.pcm` (they also accept an
int16 numpy array and turn it into bytes once, at the edge). ``bytes`` is
what PortAudio, webrtcvad, WAV files and the STT engines all take, so no
conversion sits on the per-frame path.

The markers (:class:`SpeechStarted`, :class:`SpeechStopped`,
:class:`PlaybackStarted`, :class:`PlaybackFinished`) are control elements:
every stage passes them through untouched and no buffer drops them. They are
not urgent: they keep their place in the stream.

>>> SpeechStarted(1.5).timestamp
1.5
>>> VadFrame(b"\\0\\0" * 160, 16000, 1, 0.0, True).speech
True
"""

from __future__ import annotations

from typing import Any

from ..elements import AudioFrame, Control, Element

__all__ = [
    "PlaybackFinished",
    "PlaybackStarted",
    "SpeechStarted",
    "SpeechStopped",
    "Utterance",
    "VadFrame",
]


class VadFrame(AudioFrame):
    """An audio frame tagged by the VAD: ``speech`` is True when it holds voice.

    It is an :class:`AudioFrame`, so stages that take audio take it too.
    """

    __slots__ = ("speech",)

    def __init__(self, pcm: Any, sample_rate: int, channels: int, timestamp: float, speech: bool) -> None:
        self.pcm = pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.timestamp = timestamp
        self.speech = speech

    # Element compares and prints the class's own slots; name the inherited ones too.
    _all_slots = ("pcm", "sample_rate", "channels", "timestamp", "speech")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._all_slots)

    def __repr__(self) -> str:
        return (
            f"VadFrame({self.duration * 1000:.0f} ms, {self.sample_rate} Hz, {self.channels} ch, "
            f"t={self.timestamp:.3f}, speech={self.speech})"
        )


class SpeechStarted(Control):
    """The user started speaking; ``timestamp`` is the first speech frame's time (audio clock)."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: float = 0.0) -> None:
        self.timestamp = timestamp


class SpeechStopped(Control):
    """The user stopped speaking.

    ``timestamp`` is where speech ended (the first frame of the closing
    silence, audio clock); ``speech_s`` the seconds tagged as speech in the
    turn; ``reason`` is ``"silence"``, ``"max_turn"``, ``"stalled"`` (no
    frames came for ``stop_ms``) or ``"end_of_stream"``; ``discarded`` is True
    when the turn was shorter than ``min_speech_ms`` and no
    :class:`Utterance` follows.
    """

    __slots__ = ("timestamp", "speech_s", "reason", "discarded")

    def __init__(
        self, timestamp: float = 0.0, speech_s: float = 0.0, reason: str = "silence", discarded: bool = False
    ) -> None:
        self.timestamp = timestamp
        self.speech_s = speech_s
        self.reason = reason
        self.discarded = discarded


class Utterance(Element):
    """The audio of one user turn, pre-roll included, as one PCM block.

    Not an :class:`AudioFrame` on purpose: a stage that consumes frames must
    not count a turn's audio twice. ``frame`` gives it as one.
    """

    __slots__ = ("pcm", "sample_rate", "channels", "timestamp", "reason")

    def __init__(
        self, pcm: bytes, sample_rate: int, channels: int = 1, timestamp: float = 0.0, reason: str = "silence"
    ) -> None:
        self.pcm = pcm
        self.sample_rate = sample_rate
        self.channels = channels
        self.timestamp = timestamp
        self.reason = reason

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / (2 * self.sample_rate * self.channels)

    @property
    def frame(self) -> AudioFrame:
        """The utterance as a single :class:`AudioFrame`."""
        return AudioFrame(self.pcm, self.sample_rate, self.channels, self.timestamp)


class PlaybackStarted(Control):
    """The first sample of a reply left the device; ``time`` is ``time.monotonic()`` then."""

    __slots__ = ("time",)

    def __init__(self, time: float = 0.0) -> None:
        self.time = time


class PlaybackFinished(Control):
    """The last sample of a reply left the device (or playback was cut short).

    ``time`` is ``time.monotonic()`` then; ``played_s`` the seconds of audio
    played in this reply; ``interrupted`` is True when an
    :class:`~rxkit.elements.Interrupt` (or ``flush()``) cut it short.
    """

    __slots__ = ("time", "played_s", "interrupted")

    def __init__(self, time: float = 0.0, played_s: float = 0.0, interrupted: bool = False) -> None:
        self.time = time
        self.played_s = played_s
        self.interrupted = interrupted
