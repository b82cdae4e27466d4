"""Text-to-speech: one protocol and a pyttsx3 (espeak-ng) engine.

Each sentence becomes 16-bit mono PCM, synthesized on the engine's own
worker thread (never on the event loop) into memory: no file is written.

>>> tts = Pyttsx3TTS(voice="en-us", rate=180)          # doctest: +SKIP
>>> pcm = await tts.asynthesize("Hello there.")        # doctest: +SKIP
>>> len(pcm) / 2 / tts.sample_rate                     # seconds  # doctest: +SKIP
0.9
>>> tts.close()                                        # doctest: +SKIP

espeak-ng is one library per process with one voice setting and one audio
callback, so every instance takes a process-wide lock per sentence and
re-applies its own voice and rate when another instance changed them. Why
rxkit does not use pyttsx3's ``save_to_file`` + ``runAndWait`` loop (it
loses sentences): see :mod:`rxkit.audio._espeak`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from rxkit.audio import _espeak
from rxkit.audio._worker import Worker
from rxkit.errors import AudioError, ConfigError, RxkitError

__all__ = ["TTS", "Pyttsx3TTS", "Voice", "speakable"]


class TTS(ABC):
    """Base of speech synthesizers: text in, 16-bit mono PCM bytes at ``sample_rate`` out."""

    name = "tts"
    sample_rate = 22_050
    channels = 1

    def __init__(self) -> None:
        self._worker = Worker(f"rxkit-tts-{self.name}")

    @abstractmethod
    def _synthesize(self, text: str) -> bytes:
        """Synthesize on the worker thread."""

    def synthesize(self, text: str) -> bytes:
        """Synthesize ``text``, blocking until done (for scripts)."""
        if not speakable(text):
            return b""
        try:
            return self._worker.call(self._synthesize, text)
        except RxkitError:
            raise
        except Exception as exc:  # engine failures get one typed error
            raise _failed(self, exc) from exc

    async def asynthesize(self, text: str) -> bytes:
        """Synthesize ``text`` without blocking the event loop."""
        if not speakable(text):
            return b""
        try:
            return await self._worker.run(self._synthesize, text)
        except RxkitError:
            raise
        except Exception as exc:  # engine failures get one typed error
            raise _failed(self, exc) from exc

    async def astream(self, text: str) -> AsyncGenerator[bytes, None]:
        """Yield ``text``'s speech as PCM chunks as soon as the engine has them.

        A local engine synthesizes the whole sentence and yields it once; a
        streaming engine (a cloud service) yields audio while it is still
        producing the rest, so playback starts sooner. Chunks hold whole
        16-bit samples. :func:`~rxkit.operators.synthesize` speaks through
        this method.
        """
        pcm = await self.asynthesize(text)
        if pcm:
            yield pcm

    def close(self) -> None:
        """Stop the worker thread (a sentence in progress finishes first). Idempotent."""
        self._worker.close()

    def __enter__(self) -> TTS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Voice:
    """A voice the engine offers: pass its ``id`` (or a language code) as ``voice=``."""

    id: str
    name: str
    languages: tuple[str, ...] = ()


class Pyttsx3TTS(TTS):
    """espeak-ng through pyttsx3: ``voice`` is a voice id, language code or name
    (``"en-us"``, ``"gmw/en-us"``, ``"English (America)"``, ``"ko"``), ``rate`` is
    words per minute (default 200, as pyttsx3), ``volume`` 0..1.

    A missing espeak-ng library or an unknown voice raises at construction.
    """

    name = "pyttsx3"
    sample_rate = _espeak.SAMPLE_RATE

    def __init__(self, voice: str | None = None, rate: int | None = None, volume: float | None = None) -> None:
        if rate is not None and not 20 <= rate <= 1000:
            raise ConfigError(f"speech rate must be 20..1000 words per minute, not {rate}")
        if volume is not None and not 0.0 <= volume <= 1.0:
            raise ConfigError(f"volume must be between 0 and 1, not {volume}")
        super().__init__()
        self.voice = voice
        self.rate = rate
        self.volume = volume
        self._settings: tuple[str, int, float] = ("", 0, 0.0)
        try:
            self._worker.call(self._setup)
        except BaseException:
            self._worker.close()
            raise

    def voices(self) -> list[Voice]:
        """The voices espeak-ng offers here."""
        return [Voice(*v) for v in self._worker.call(_espeak.list_voices)]

    def _setup(self) -> None:
        with _espeak.LOCK:
            defaults = _espeak.defaults()  # None means rxkit's default, not another instance's choice
            self.voice = self.voice if self.voice is not None else defaults["voice"]
            self.rate = self.rate if self.rate is not None else defaults["rate"]
            self.volume = self.volume if self.volume is not None else defaults["volume"]
            self.voice = _espeak.apply(self.voice, self.rate, self.volume)  # the resolved id, e.g. "gmw/en-us"
            self._settings = (self.voice, self.rate, self.volume)

    def _synthesize(self, text: str) -> bytes:
        with _espeak.LOCK:
            _espeak.apply(*self._settings)
            return _espeak.synthesize(text)

    def __repr__(self) -> str:
        return f"Pyttsx3TTS(voice={self.voice!r}, rate={self.rate!r}, volume={self.volume!r})"


def speakable(text: str) -> bool:
    """True if ``text`` has anything to say (a letter or digit): punctuation alone is not spoken."""
    return any(c.isalnum() for c in text)


def _failed(tts: TTS, exc: Exception) -> AudioError:
    return AudioError(f"{tts.name} speech synthesis failed: {type(exc).__name__}: {exc}")
