"""WAV files as audio sources and sinks (16-bit PCM).

:func:`wav_source` reads a file as :class:`~rxkit.elements.AudioFrame`
blocks of ``frame_ms``, either as fast as the consumer takes them or paced
in real time on a scheduler, like a microphone (frame ``i`` is emitted once
it would have been recorded: at ``(i + 1) * frame_ms``). :func:`wav_sink`
writes the frames it gets into a file and closes it when the input ends.

>>> import tempfile, os, reactivex.operators as ops
>>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
>>> write_wav(path, AudioFrame(b"\\1\\0" * 16000, 16000))
>>> frames = wav_source(path, frame_ms=20).pipe(ops.to_list()).run()
>>> len(frames), frames[1].timestamp, read_wav(path).duration
(50, 0.02, 1.0)
"""

from __future__ import annotations

import contextlib
import os
import wave
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import CurrentThreadScheduler

from rxkit.audio.convert import FrameConverter
from rxkit.elements import AudioFrame
from rxkit.errors import AudioError, ConfigError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import resolve_scheduler

__all__ = ["WavInfo", "read_wav", "wav_info", "wav_sink", "wav_source", "write_wav"]


class WavInfo:
    """The format of a WAV file."""

    __slots__ = ("path", "sample_rate", "channels", "frames")

    def __init__(self, path: str, sample_rate: int, channels: int, frames: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def __repr__(self) -> str:
        return f"WavInfo({self.path!r}, {self.sample_rate} Hz, {self.channels} ch, {self.duration:.2f} s)"


def _open_read(path: str | os.PathLike[str]) -> wave.Wave_read:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"no such WAV file: {path}")
    try:
        w = wave.open(path, "rb")  # noqa: SIM115 - the caller closes it (it outlives this function)
    except (wave.Error, EOFError, OSError) as exc:
        raise ConfigError(f"{path} is not a WAV file rxkit can read (16-bit PCM): {exc}") from exc
    if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
        bits = w.getsampwidth() * 8
        w.close()
        raise ConfigError(f"{path} holds {bits}-bit audio; rxkit reads 16-bit PCM WAV files only")
    return w


def wav_info(path: str | os.PathLike[str]) -> WavInfo:
    """Rate, channels and length of a 16-bit PCM WAV file (:class:`ConfigError` if it is not one)."""
    with _open_read(path) as w:
        return WavInfo(os.fspath(path), w.getframerate(), w.getnchannels(), w.getnframes())


def read_wav(path: str | os.PathLike[str]) -> AudioFrame:
    """A whole 16-bit PCM WAV file as one frame."""
    with _open_read(path) as w:
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels(), 0.0)


def write_wav(path: str | os.PathLike[str], frame: AudioFrame) -> None:
    """Write one frame (or a whole recording) as a 16-bit PCM WAV file."""
    from rxkit.audio.convert import as_bytes

    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(frame.channels)
        w.setsampwidth(2)
        w.setframerate(frame.sample_rate)
        w.writeframes(as_bytes(frame.pcm))


def wav_source(
    path: str | os.PathLike[str],
    frame_ms: float = 20,
    *,
    realtime: bool = False,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[AudioFrame]:
    """A cold observable of the file's audio in blocks of ``frame_ms`` (the last one may be shorter).

    ``realtime=False``: all frames at once, on ``scheduler`` (default: the
    current thread). ``realtime=True``: one frame per ``frame_ms``, on
    ``scheduler``, else the subscribe-time one, else the running asyncio
    loop. ``timestamp`` is each frame's offset in the file, in seconds. A
    missing or unsupported file raises :class:`ConfigError` here; the file is
    opened per subscription and closed at the end or on dispose.
    """
    info = wav_info(path)
    step = max(1, round(info.sample_rate * frame_ms / 1000))
    frame_s = step / info.sample_rate

    def subscribe(observer: abc.ObserverBase[AudioFrame], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
        if realtime:
            sch = resolve_scheduler(scheduler, sub_scheduler)
        else:
            sch = scheduler or sub_scheduler or CurrentThreadScheduler.singleton()
        try:
            reader = _open_read(info.path)
        except ConfigError as exc:
            observer.on_error(exc)
            return Disposable()
        state = {"index": 0, "done": False}
        serial = SerialDisposable()

        def finish() -> None:
            if not state["done"]:
                state["done"] = True
                reader.close()

        def next_frame() -> AudioFrame | None:
            try:
                pcm = reader.readframes(step)
            except (OSError, EOFError, wave.Error) as exc:
                raise AudioError(f"reading {info.path} failed: {exc}") from exc
            if not pcm:
                return None
            i = state["index"]
            state["index"] = i + 1
            return AudioFrame(pcm, info.sample_rate, info.channels, i * frame_s)

        def emit_all(_: abc.SchedulerBase, __: Any = None) -> None:
            try:
                while not state["done"]:
                    frame = next_frame()
                    if frame is None:
                        break
                    observer.on_next(frame)
            except Exception as exc:  # noqa: BLE001 - becomes on_error
                finish()
                observer.on_error(exc)
                return
            if not state["done"]:
                finish()
                observer.on_completed()

        def emit_one(sch_: abc.SchedulerBase, __: Any = None) -> None:
            if state["done"]:
                return
            try:
                frame = next_frame()
            except Exception as exc:  # noqa: BLE001 - becomes on_error
                finish()
                observer.on_error(exc)
                return
            if frame is None:
                finish()
                observer.on_completed()
                return
            observer.on_next(frame)
            if not state["done"]:
                # Due times count from the start, so pacing does not drift.
                due = (state["index"] + 1) * frame_s
                elapsed = (sch_.now - start).total_seconds()
                serial.disposable = sch.schedule_relative(max(0.0, due - elapsed), emit_one)

        start = sch.now
        if realtime:
            serial.disposable = sch.schedule_relative(frame_s, emit_one)
        else:
            serial.disposable = sch.schedule(emit_all)
        return CompositeDisposable(serial, Disposable(finish))

    return reactivex.create(subscribe)


def wav_sink(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    channels: int | None = None,
    *,
    passthrough: bool = False,
) -> Stage[Any, Any]:
    """A sink stage writing audio frames to a 16-bit PCM WAV file; closes it when the input ends.

    The file takes ``sample_rate`` / ``channels``, or the first frame's;
    frames in another format are converted. With no audio at all it still
    writes a valid, empty file. Other elements pass through; audio frames too
    when ``passthrough`` (a tap that records what flows by). On error or
    dispose the file is closed with what was written so far.

    >>> tts.pipe(wav_sink("reply.wav")).run()   # doctest: +SKIP
    """
    target = os.fspath(path)

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            state: dict[str, Any] = {"file": None, "writer": None, "convert": None, "closed": False}

            def open_file(rate: int, ch: int) -> wave.Wave_write:
                try:
                    # Open the file ourselves: wave.open(path) on a bad path leaves a half-made
                    # Wave_write whose __del__ raises. Open across the subscription; close() closes it.
                    f = open(target, "wb")  # noqa: SIM115
                except OSError as exc:
                    raise AudioError(f"cannot write {target}: {exc}") from exc
                w = wave.open(f, "wb")  # noqa: SIM115 - closed in close(), with the file
                w.setnchannels(ch)
                w.setsampwidth(2)
                w.setframerate(rate)
                state["file"], state["writer"] = f, w
                state["convert"] = FrameConverter(rate, ch)
                return w

            def close() -> None:
                if not state["closed"]:
                    state["closed"] = True
                    writer, f = state["writer"], state["file"]
                    if writer is not None:
                        with contextlib.suppress(OSError):
                            writer.close()  # writes the final header; leaves our file open
                    if f is not None:
                        f.close()

            def on_next(x: Any) -> None:
                if state["closed"]:
                    return
                if isinstance(x, AudioFrame):
                    try:
                        writer = state["writer"] or open_file(sample_rate or x.sample_rate, channels or x.channels)
                        writer.writeframesraw(state["convert"](x).pcm)
                    except Exception as exc:  # noqa: BLE001 - typed, to on_error
                        close()
                        err = (
                            exc
                            if isinstance(exc, (AudioError, ConfigError))
                            else AudioError(f"writing {target} failed: {exc}")
                        )
                        observer.on_error(err)
                        return
                    if not passthrough:
                        return
                observer.on_next(x)

            def on_error(exc: Exception) -> None:
                close()
                observer.on_error(exc)

            def on_completed() -> None:
                try:
                    if state["writer"] is None and not state["closed"]:
                        open_file(sample_rate or 16000, channels or 1)
                except AudioError as exc:
                    close()
                    observer.on_error(exc)
                    return
                close()
                observer.on_completed()

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return CompositeDisposable(sub, Disposable(close))

        return reactivex.create(subscribe)

    return Stage("wav_sink", operator, StageKind.SINK, f"writes audio to {target}")
