"""playout: wraps the output sink (speaker or WAV file) of a voice graph: turn bookkeeping and barge-in timing."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from rxkit.elements import (
    AudioFrame,
    EndOfStream,
    EndOfTurn,
    Interrupt,
    PlaybackFinished,
    PlaybackStarted,
    ReplyStarted,
    TextDelta,
)
from rxkit.errors import BufferOverflowError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage
from rxkit.operators._barge_in import BargeIn
from rxkit.scheduling import resolve_scheduler

__all__ = ["playout"]

_MAX_HELD = 10_000  # elements held while a barge-in waits for the sentence playing to end


def playout(
    sink: Stage[Any, Any],
    floor: Floor,
    *,
    device: bool = True,
    scheduler: Any = None,
    pause: Callable[[bool], None] | None = None,
    position: Callable[[], float | None] | None = None,
    stop_after: Callable[[float], None] | None = None,
) -> Stage[Any, Any]:
    """``sink`` (a :func:`~rxkit.audio.speaker` or :func:`~rxkit.audio.wav_sink`) with the voice bookkeeping around it.

    Before the sink: the first audio of each reply is noted on ``floor``
    (and, for a file sink, ``device=False``, counts as the first audio out);
    a :class:`BargeIn` with strategy ``"after_sentence"`` is held back until
    the sentence playing ends (sentence starts are known from the
    :class:`~rxkit.operators.Sentence` elements that ``synthesize(keep_text=True)``
    puts before their audio; what arrives meanwhile waits), then goes on to
    flush the rest. After the sink: :class:`PlaybackStarted` /
    :class:`PlaybackFinished` tell the floor when the assistant is heard, the
    first PlaybackStarted of a reply completes the turn's latency figures, and
    each EndOfTurn ends its reply. ``pause``: how to hold (True) and resume
    (False) the sink's playback (a speaker's :meth:`~rxkit.audio.Speaker.pause`
    and :meth:`~rxkit.audio.Speaker.resume`), which :meth:`Floor.pause_playback`
    calls while this stage runs (a suspected barge-in). ``position``: how many
    seconds of the reply playing were heard (a speaker's
    :meth:`~rxkit.audio.Speaker.played_s`, timed by the device's DAC), for
    where the sentence playing ends; without it the time since
    PlaybackStarted is taken, which runs ahead of the audio by the device's
    start-up latency and when it underruns. ``stop_after``: how to make the
    sink stop the reply at a given second of it (a speaker's
    :meth:`~rxkit.audio.Speaker.stop_after`), so that the cut falls on the
    sentence's end even when this stage's timer fires late. Everything passes
    through.
    """

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
            run = _Run(floor, device, position, stop_after)
            if pause is not None:
                floor.on_pause = pause

            def subscribe_pre(obs: abc.ObserverBase[Any], sch: abc.SchedulerBase | None = None) -> Any:
                return run.subscribe_pre(source, obs, sch, scheduler)

            pre: Observable[Any] = reactivex.create(subscribe_pre)
            out = sink(pre).subscribe(
                run.post(observer), observer.on_error, observer.on_completed, scheduler=sub_scheduler
            )
            return CompositeDisposable(out, run.timer, Disposable(lambda: _unhook(floor, pause)))

        return reactivex.create(subscribe)

    return Stage(sink.name, operator, sink.kind, sink.description)


def _unhook(floor: Floor, pause: Callable[[bool], None] | None) -> None:
    if pause is not None and floor.on_pause is pause:
        floor.on_pause = None


class _Run:
    def __init__(
        self,
        floor: Floor,
        device: bool,
        position: Callable[[], float | None] | None = None,
        stop_after: Callable[[float], None] | None = None,
    ) -> None:
        self.floor = floor
        self.position = position
        self.stop_after = stop_after
        self.device = device
        self.turn = 0  # the reply the elements now passing belong to (from ReplyStarted)
        self.first_audio = True
        self.segment_open = False  # audio sent since the last end marker: the speaker plays it as one reply
        self.segments: deque[int] = deque(maxlen=64)  # turns of replies whose PlaybackStarted is still to come
        self.starts: list[float] = []  # seconds into the playing reply where each sentence begins
        self.queued = 0.0  # seconds of audio sent in the current reply
        self.held: list[Any] | None = None  # not None while a barge-in waits for the sentence end
        self.deferred: BargeIn | None = None  # that barge-in
        self.cut_reported = False  # the floor was told what of the reply the deferred cut leaves heard
        self.timer = SerialDisposable()
        self.observer: abc.ObserverBase[Any] | None = None

    # -- before the sink --------------------------------------------------------------
    def subscribe_pre(
        self, source: Observable[Any], observer: abc.ObserverBase[Any], sch: Any, scheduler: Any
    ) -> abc.DisposableBase:
        self.observer = observer
        self.scheduler = scheduler
        self.sub_scheduler = sch
        return source.subscribe(self.on_next, observer.on_error, self.on_completed, scheduler=sch)

    def on_next(self, x: Any) -> None:
        if self.held is not None:
            if isinstance(x, Interrupt):
                self.release()  # a new interrupt: stop now, the sentence is not waited for
            else:
                if len(self.held) >= _MAX_HELD:
                    assert self.observer is not None
                    self.observer.on_error(BufferOverflowError(f"playout: more than {_MAX_HELD} elements held"))
                    return
                self.held.append(x)
                return
        self.process(x)

    def on_completed(self) -> None:
        assert self.observer is not None
        if self.held is not None:
            self.release()
        self.observer.on_completed()

    def process(self, x: Any) -> None:
        observer = self.observer
        assert observer is not None
        if isinstance(x, AudioFrame):
            if self.first_audio:
                self.first_audio = False
                now = time.monotonic()
                self.floor.mark(self.turn, "audio_queued", now)
                if not self.device:
                    self.floor.audio_out(self.turn, now, device=False)
            if not self.segment_open:
                self.segment_open = True
                self.segments.append(self.turn)
                self.queued = 0.0
                self.starts = [0.0]
            self.queued += x.duration
        elif isinstance(x, ReplyStarted):
            self.turn = x.turn
            self.first_audio = True
        elif isinstance(x, TextDelta):
            self.floor.sentence_queued(self.turn, self.queued if self.segment_open else 0.0, x.text)
            if self.segment_open and len(self.starts) < 10_000:  # bounded; a reply is a few dozen sentences
                self.starts.append(self.queued)
        elif isinstance(x, BargeIn) and x.strategy == "after_sentence" and x is not self.deferred and self.defer(x):
            return
        elif isinstance(x, (Interrupt, EndOfTurn, EndOfStream)):
            self.segment_open = False
        observer.on_next(x)

    def defer(self, barge_in: BargeIn) -> bool:
        """Hold ``barge_in`` until the sentence playing ends; False when there is nothing to wait for."""
        if not (self.device and self.floor.playing):
            return False  # nothing is heard yet: stop at once
        played = self.position() if self.position is not None else None
        position = played if played is not None else time.monotonic() - self.floor.playing_since
        ends = [s for s in self.starts if s > position + 0.05]
        wait = (ends[0] if ends else self.queued) - position
        if wait <= 0.05:
            return False
        self.held = []
        self.deferred = barge_in
        # What will have been heard is known now (the sentences begun by its end): tell the floor at once,
        # so that a next turn that starts before the sentence has finished finds the cut turn saved as heard.
        self.floor.playback_cut(position + wait)
        self.cut_reported = True
        sch = resolve_scheduler(self.scheduler, self.sub_scheduler)
        if played is None:  # no count from the sink: the clock's guess
            self.timer.disposable = sch.schedule_relative(wait, lambda *_: self.release())
        else:
            if self.stop_after is not None:
                self.stop_after(position + wait)  # the sink stops there by itself; the timer then flushes
            self.timer.disposable = sch.schedule_relative(wait, lambda *_: self.wait_until(position + wait, sch))
        return True

    def wait_until(self, end: float, sch: abc.SchedulerBase) -> None:
        """Release once the sink has played ``end`` seconds of the reply, by its own position: an underrun
        stalls the audio but not the clock, so the wait is checked again when it is over."""
        played = self.position() if self.position is not None else None
        if played is None or end - played <= 0.02 or not self.floor.playing:
            self.release()
            return
        self.timer.disposable = sch.schedule_relative(end - played, lambda *_: self.wait_until(end, sch))

    def release(self) -> None:
        """The sentence ended (or another interrupt came): flush the sink, then pass what was held."""
        held, self.held = self.held or [], None
        self.timer.disposable = Disposable()
        if self.deferred is not None:
            self.process(self.deferred)  # marked as deferred: it goes on to the sink this time
        self.deferred = None
        for x in held:
            if self.held is not None:  # a held barge-in was deferred again
                self.held.append(x)
            else:
                self.process(x)

    # -- after the sink ---------------------------------------------------------------
    def post(self, observer: abc.ObserverBase[Any]) -> Any:
        floor, segments, device = self.floor, self.segments, self.device

        def on_next(x: Any) -> None:
            if isinstance(x, PlaybackStarted):
                floor.playback_started(x.time)
                if segments:
                    floor.playing_turn = segments.popleft()
                    floor.audio_out(floor.playing_turn, x.time, device)
            elif isinstance(x, PlaybackFinished):
                floor.playback_finished(x.time)
                if x.interrupted and not self.cut_reported:
                    floor.playback_cut(x.played_s)
                self.cut_reported = False  # the first end after a deferred cut is that reply's
            elif isinstance(x, EndOfTurn):
                floor.reply_over(x)
            elif isinstance(x, Interrupt):
                segments.clear()  # the sink dropped every reply not yet started
            observer.on_next(x)

        return on_next
