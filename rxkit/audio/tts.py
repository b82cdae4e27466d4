"""Text-to-speech: one protocol and a pyttsx3 (espeak-ng) engine.

Each sentence becomes 16-bit mono PCM, synthesized on the engine's own
worker thread (never on the event loop) into memory: no file is written.

>>> tts = Pyttsx3TTS(voice="en-us", rate=180)          # doctest: +SKIP
>>> pcm = await tts.asynthesize("Hello there.")        # doctest: +SKIP
>>> len(pcm) / 2 / tts.sample_rate                     # seconds  # doctest: +SKIP
0.9
>>> tts.close()                                        # doctest: +SKIP

How pyttsx3 is driven, and why: ``save_to_file`` into a ``BytesIO`` writes a
22050 Hz mono s16 WAV in memory (about 10 ms per sentence; pyttsx3's driver
loop sleeps 10 ms per run). ``say()`` is never used: after one
``save_to_file``, pyttsx3 writes later ``say()`` output to that same target.
espeak-ng is one library per process with global voice settings and one
audio callback, so all instances share pyttsx3's one cached engine, take a
process-wide lock per sentence, and re-apply their own voice and rate when
another instance changed them.
"""

from __future__ import annotations

import io
import threading
import time
import wave
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from rxkit.errors import AudioError, ConfigError, RxkitError

from ._worker import Worker

__all__ = ["TTS", "Pyttsx3TTS", "Voice"]


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
        if not _speakable(text):
            return b""
        return _typed(self, lambda: self._worker.call(self._synthesize, text))

    async def asynthesize(self, text: str) -> bytes:
        """Synthesize ``text`` without blocking the event loop."""
        if not _speakable(text):
            return b""
        try:
            return await self._worker.run(self._synthesize, text)
        except RxkitError:
            raise
        except Exception as exc:
            raise _failed(self, exc) from exc

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
    words per minute (espeak's default is 175; pyttsx3 sets 200), ``volume`` 0..1.

    A missing espeak-ng library or an unknown voice raises at construction.
    """

    name = "pyttsx3"

    def __init__(self, voice: str | None = None, rate: int | None = None, volume: float | None = None) -> None:
        if rate is not None and not 20 <= rate <= 1000:
            raise ConfigError(f"speech rate must be 20..1000 words per minute, not {rate}")
        if volume is not None and not 0.0 <= volume <= 1.0:
            raise ConfigError(f"volume must be between 0 and 1, not {volume}")
        super().__init__()
        self.voice = voice
        self.rate = rate
        self.volume = volume
        try:
            self._worker.call(self._setup)
        except BaseException:
            self._worker.close()
            raise

    def voices(self) -> list[Voice]:
        """The voices espeak-ng offers here."""
        return self._worker.call(_list_voices)

    def _setup(self) -> None:
        with _LOCK:
            engine = _engine()
            defaults = _state["defaults"]  # None means espeak-ng's default, not another instance's choice
            self.voice = self.voice if self.voice is not None else defaults["voice"]
            self.rate = self.rate if self.rate is not None else defaults["rate"]
            self.volume = self.volume if self.volume is not None else defaults["volume"]
            self._apply(engine)
            self.voice = _applied["voice"] = engine.getProperty("voice")  # the resolved id, e.g. "gmw/en-us"

    def _apply(self, engine: Any) -> None:
        _wait_idle()
        wanted = {"voice": self.voice, "rate": self.rate, "volume": self.volume}
        for key, value in wanted.items():
            if _applied.get(key) == value:
                continue
            _errors.clear()
            engine.setProperty(key, value)
            if _errors:
                _applied.pop(key, None)
                hint = "; see Pyttsx3TTS().voices() for the list" if key == "voice" else ""
                raise ConfigError(f"espeak-ng rejected {key}={value!r}: {_errors[-1]}{hint}")
            _applied[key] = value
        _wait_idle()  # setProperty is queued inside espeak-ng: let it land before the next Synth

    def _synthesize(self, text: str) -> bytes:
        with _LOCK:
            engine = _engine()
            self._apply(engine)
            target = io.BytesIO()  # in memory: no file is ever written
            _errors.clear()
            engine.save_to_file(text, target)
            engine.runAndWait()
            if _errors:
                raise AudioError(f"espeak-ng failed to synthesize {text[:40]!r}: {_errors[-1]}")
        data = target.getvalue()
        if not data:
            return b""
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise AudioError("pyttsx3 wrote an unexpected WAV format (not 16-bit mono)")
            self.sample_rate = wav.getframerate()
            return wav.readframes(wav.getnframes())

    def __repr__(self) -> str:
        return f"Pyttsx3TTS(voice={self.voice!r}, rate={self.rate!r}, volume={self.volume!r})"


# -- the one espeak-ng engine of this process --------------------------------------

_LOCK = threading.Lock()  # one sentence at a time in the whole process: espeak-ng is global
_state: dict[str, Any] = {}
_applied: dict[str, Any] = {}  # the settings espeak-ng has now, whoever set them
_errors: deque[Exception] = deque(maxlen=4)  # pyttsx3 reports failures through a callback


def _engine() -> Any:
    engine = _state.get("engine")
    if engine is not None:
        return engine
    try:
        import pyttsx3
        import pyttsx3.drivers._espeak as espeak_lib
        import pyttsx3.drivers.espeak as espeak_driver
    except ImportError as exc:
        raise ConfigError("pyttsx3 is not installed: pip install 'rxkit[voice]'") from exc
    except (RuntimeError, OSError) as exc:  # pyttsx3 raises RuntimeError when libespeak-ng is absent
        raise AudioError(
            "espeak-ng is not installed (pyttsx3 needs the libespeak-ng library): "
            "install it, e.g. `apt install espeak-ng`"
        ) from exc
    # The driver prints "Audio saved to ..." on every save; silence that module only.
    espeak_driver.print = _quiet  # type: ignore[attr-defined]
    try:
        engine = pyttsx3.init("espeak")
    except Exception as exc:
        raise AudioError(f"could not start espeak-ng through pyttsx3: {exc}") from exc
    engine.connect("error", _on_error)
    _state["espeak"] = espeak_lib
    # The driver queues commands until its loop has run once; run it now so that
    # setProperty takes effect (and reports errors) immediately from here on.
    engine.runAndWait()
    _state["engine"] = engine  # kept for the life of the process, as espeak-ng itself is
    _state["defaults"] = {k: engine.getProperty(k) for k in ("voice", "rate", "volume")}
    _applied.clear()
    _applied.update(_state["defaults"])
    return engine


def _wait_idle(limit: float = 5.0) -> None:
    """Wait until espeak-ng's own thread is idle.

    pyttsx3 starts espeak-ng in its asynchronous (retrieval) mode: setProperty and
    Synth are queued to espeak-ng's thread, and pyttsx3's runAndWait cancels
    whatever is still queued (``stop()`` when ``IsPlaying()``), which loses
    settings and sometimes the whole sentence. Measured here before this wait:
    1 sentence in ~20 came back empty and rate changes were often ignored.
    """
    espeak = _state["espeak"]
    deadline = time.monotonic() + limit
    while espeak.IsPlaying():
        if time.monotonic() > deadline:
            raise AudioError(f"espeak-ng stayed busy for {limit} s")
        time.sleep(0.001)


def _on_error(name: Any = None, exception: Exception | None = None, **_: Any) -> None:
    _errors.append(exception or AudioError("unknown espeak-ng error"))


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


def _list_voices() -> list[Voice]:
    with _LOCK:
        engine = _engine()
        return [Voice(v.id, v.name, tuple(v.languages or ())) for v in engine.getProperty("voices")]


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _failed(tts: TTS, exc: Exception) -> AudioError:
    return AudioError(f"{tts.name} speech synthesis failed: {type(exc).__name__}: {exc}")


def _typed(tts: TTS, fn: Any) -> bytes:
    try:
        result: bytes = fn()
        return result
    except RxkitError:
        raise
    except Exception as exc:
        raise _failed(tts, exc) from exc
