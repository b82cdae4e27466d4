"""The one espeak-ng of this process, reached through pyttsx3 (used by :mod:`rxkit.audio.tts`).

pyttsx3 starts espeak-ng in its asynchronous "retrieval" mode: settings and
text are queued to espeak-ng's own thread, and audio comes back through one
process-wide callback. pyttsx3's ``save_to_file(text, BytesIO)`` +
``runAndWait()`` does give a 22050 Hz s16 WAV in memory, but its loop is racy
with that thread: it cancels espeak-ng's queue whenever espeak-ng is still busy
(rate changes lost; measured here, 1 process in 15 lost its 2nd sentence even
after waiting for idle), never returns when there is nothing to say, and
sleeps 10 ms per sentence. So rxkit uses pyttsx3 to start espeak-ng once
(``pyttsx3.init("espeak")``, shared with any other pyttsx3 user in the
process) and its driver for voices and settings, and synthesizes with
pyttsx3's espeak-ng binding directly: queue the text, collect the audio in a
callback, wait for espeak-ng's end-of-message event. ``say()`` is never used.

Everything here runs under :data:`LOCK`: espeak-ng has one voice and one
callback for the whole process.
"""

from __future__ import annotations

import atexit
import ctypes
import threading
import time
from typing import Any

from rxkit.errors import AudioError, ConfigError
from rxkit.extras import require_extra

__all__ = ["LOCK", "SAMPLE_RATE", "apply", "list_voices", "synthesize"]

LOCK = threading.Lock()
SAMPLE_RATE = 22_050  # espeak-ng's output rate (pyttsx3 assumes the same)
_state: dict[str, Any] = {}
_applied: dict[str, Any] = {}  # the settings espeak-ng has now, whoever set them


class _Job:
    """The sentence being synthesized: its audio chunks and an end-of-message flag."""

    __slots__ = ("chunks", "done")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = threading.Event()


def _on_synth(wav: Any, numsamples: int, events: Any) -> int:
    """espeak-ng's audio callback (its own thread): feed the current job, else pyttsx3's driver."""
    job: _Job | None = _state.get("job")
    if job is None:
        driver = _state.get("driver")
        return int(driver._onSynth(wav, numsamples, events)) if driver is not None else 0
    if numsamples > 0:
        job.chunks.append(ctypes.string_at(wav, numsamples * 2))
    i = 0
    while events[i].type != 0:  # EVENT_LIST_TERMINATED
        if events[i].type == 6:  # EVENT_MSG_TERMINATED: this text is done
            job.done.set()
        i += 1
    return 0


def _espeak() -> Any:
    """pyttsx3's espeak-ng binding, with espeak-ng started (once per process)."""
    started = _state.get("lib")
    if started is not None:
        return started
    try:
        pyttsx3 = require_extra("pyttsx3", "voice", "Pyttsx3TTS")
        lib = require_extra("pyttsx3.drivers._espeak", "voice", "Pyttsx3TTS")
        driver_module = require_extra("pyttsx3.drivers.espeak", "voice", "Pyttsx3TTS")
    except (RuntimeError, OSError) as exc:  # pyttsx3 raises RuntimeError when libespeak-ng is absent
        raise AudioError(
            "espeak-ng is not installed (pyttsx3 needs the libespeak-ng library): "
            "install it, e.g. `apt install espeak-ng`"
        ) from exc
    try:
        engine = pyttsx3.init("espeak")  # starts espeak-ng once; shared with other pyttsx3 users
    except Exception as exc:  # any failure here means no usable espeak-ng
        raise AudioError(f"could not start espeak-ng through pyttsx3: {exc}") from exc
    _state["engine"] = engine  # kept for the life of the process, as espeak-ng itself is
    _state["driver"] = engine.proxy._driver
    _state["driver_class"] = driver_module.EspeakDriver
    _state["callback"] = lib.t_espeak_callback(_on_synth)  # referenced here so ctypes keeps it alive
    _state["defaults"] = {"voice": driver_module.EspeakDriver.getProperty("voice"), "rate": 200, "volume": 1.0}
    _state["lib"] = lib
    atexit.register(_release)
    return lib


def _release() -> None:
    """At exit, let pyttsx3 clean up while the interpreter still works (its ``__del__``
    fails with "'NoneType' object has no attribute 'suppress'" during shutdown)."""
    if LOCK.acquire(timeout=1.0):
        try:
            _state.pop("engine", None)  # pyttsx3's engine goes first: it unhooks espeak-ng's callback
            _state.clear()
        finally:
            LOCK.release()


def defaults() -> dict[str, Any]:
    """rxkit's default settings: espeak-ng's default voice, pyttsx3's 200 words per minute, full volume."""
    _espeak()
    return dict(_state["defaults"])


def wait_idle(limit: float = 5.0) -> None:
    """Wait until espeak-ng's thread has done everything queued (settings apply in order)."""
    lib = _espeak()
    deadline = time.monotonic() + limit
    while lib.IsPlaying():
        if time.monotonic() > deadline:
            raise AudioError(f"espeak-ng stayed busy for {limit} s")
        time.sleep(0.001)


def apply(voice: str, rate: int, volume: float) -> str:
    """Give espeak-ng these settings (only what changed); returns the voice's id."""
    wait_idle()  # a voice change is immediate: never while espeak-ng's thread still works
    driver = _state["driver_class"]
    for key, value in (("voice", voice), ("rate", rate), ("volume", volume)):
        if _applied.get(key) == value:
            continue
        try:
            driver.setProperty(key, value)
        except (ValueError, KeyError) as exc:
            _applied.pop(key, None)
            hint = "; Pyttsx3TTS().voices() lists them" if key == "voice" else ""
            raise ConfigError(f"espeak-ng rejected {key}={value!r}: {exc}{hint}") from None
        _applied[key] = value
    resolved = str(driver.getProperty("voice"))
    _applied["voice"] = resolved
    return resolved


def synthesize(text: str, timeout: float = 30.0) -> bytes:
    """Speak ``text`` into 16-bit mono PCM at :data:`SAMPLE_RATE` (call under :data:`LOCK`)."""
    lib = _espeak()
    wait_idle()
    job = _Job()
    _state["job"] = job
    try:
        lib.cSetSynthCallback(_state["callback"])  # again each time: a new pyttsx3 driver replaces it
        status = lib.Synth(text, flags=lib.ENDPAUSE | lib.CHARS_UTF8)
        if status != 0:
            raise AudioError(f"espeak-ng could not queue the text (error {status})")
        if not job.done.wait(timeout):
            lib.Cancel()
            raise AudioError(f"espeak-ng did not finish a sentence within {timeout} s")
    finally:
        _state["job"] = None
    return b"".join(job.chunks)


def list_voices() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(id, name, languages)`` of every voice espeak-ng offers."""
    _espeak()
    voices = _state["driver_class"].getProperty("voices")
    return [(v.id, v.name, tuple(v.languages or ())) for v in voices]
