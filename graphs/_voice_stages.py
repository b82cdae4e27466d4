"""Stages only the voice graph uses: the audio source, the assistant (text-mode graph per user turn), timing taps."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from rxkit.audio.stt import Transcript
from rxkit.elements import EndOfTurn, ErrorElement, MessageElement, TextDelta
from rxkit.errors import BufferOverflowError, ProviderError, StateError, ToolError, ValidationFailed
from rxkit.operators._floor import Floor, ReplyStarted
from rxkit.stage import Stage, StageKind
from rxkit.turn import Turn
from rxkit.types import Message

__all__ = ["assistant", "audio_source", "timed"]

# A failed turn is reported in-band (ErrorElement + EndOfTurn) and the conversation goes on.
_TURN_ERRORS = (ProviderError, ToolError, ValidationFailed, StateError)


def audio_source(audio: Observable[Any], name: str, description: str = "") -> Stage[Any, Any]:
    """A source stage: ``audio``, plus whatever the graph's input carries (an Interrupt, a typed Transcript).

    It completes when the audio does; the input's own completion is not waited for.
    """

    def operator(upstream: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            extra = upstream.subscribe(observer.on_next, observer.on_error, scheduler=scheduler)
            main = audio.subscribe(observer.on_next, observer.on_error, observer.on_completed, scheduler=scheduler)
            return CompositeDisposable(extra, main)

        return reactivex.create(subscribe)

    return Stage(name, operator, StageKind.GENERATE, description)


def timed(st: Stage[Any, Any], floor: Floor, step: str, kind: type) -> Stage[Any, Any]:
    """``st`` with the first ``kind`` element of each reply noted on ``floor`` as ``step`` (same name and kind)."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        out = st(source)

        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            state = [0, True]  # the reply's turn, waiting for its first element

            def on_next(x: Any) -> None:
                if state[1] and isinstance(x, kind):
                    state[1] = False
                    floor.mark(state[0], step)
                elif isinstance(x, ReplyStarted):
                    state[0], state[1] = x.turn, True
                observer.on_next(x)

            return out.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return Stage(st.name, operator, st.kind, st.description)


def assistant(
    text: Callable[[Observable[Any]], Observable[Any]], floor: Floor, max_waiting: int = 16
) -> Stage[Any, Any]:
    """Answer each final :class:`Transcript` with the text-mode graph ``text``, one turn at a time.

    The transcript goes out first (for display), then :class:`ReplyStarted`,
    then the reply's elements, ending with its EndOfTurn. Partial transcripts
    and other elements pass through at once. An urgent element (Interrupt,
    BargeIn) cancels the turn in flight (model call and tools) and drops the
    turns waiting. A turn that fails with a provider, tool, validation or
    state error ends with an ErrorElement and an EndOfTurn; the conversation
    goes on. More than ``max_waiting`` turns waiting is a BufferOverflowError.
    """

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            run = _Assistant(text, floor, observer, scheduler, max_waiting)
            upstream = source.subscribe(run.on_next, run.fail, run.on_completed, scheduler=scheduler)
            run.upstream = upstream
            return Disposable(run.dispose)

        return reactivex.create(subscribe)

    return Stage("text", operator, StageKind.TRANSFORM, "the text-mode graph, one user turn at a time")


class _Assistant:
    def __init__(
        self,
        text: Callable[[Observable[Any]], Observable[Any]],
        floor: Floor,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase | None,
        max_waiting: int,
    ) -> None:
        self.text = text
        self.floor = floor
        self.observer = observer
        self.scheduler = scheduler
        self.waiting: deque[tuple[int, Message]] = deque(maxlen=max_waiting)  # checked in on_next first
        self.max_waiting = max_waiting
        self.inner = SerialDisposable()
        self.upstream: abc.DisposableBase | None = None
        self.active = False
        self.generation = 0  # bumped on cancel: late signals of a cancelled turn are ignored
        self.source_done = False
        self.stopped = False

    def on_next(self, x: Any) -> None:
        if self.stopped:
            return
        if isinstance(x, Transcript):
            self.observer.on_next(x)
            if x.final and x.text.strip():
                if len(self.waiting) >= self.max_waiting:
                    self.fail(BufferOverflowError(f"more than {self.max_waiting} user turns waiting for the model"))
                    return
                turn = self.floor.transcribed(x.text)
                message = Message.user(x.text)
                self.floor.reply_accepted(message, turn)
                self.waiting.append((turn, message))
                self.next()
        elif getattr(x, "urgent", False):
            self.generation += 1
            self.active = False
            self.inner.disposable = Disposable()
            self.waiting.clear()
            self.floor.reply_over(None)
            self.observer.on_next(x)
            self.next()  # completes, if the input has
        else:
            self.observer.on_next(x)

    def next(self) -> None:
        if self.active or self.stopped:
            return
        if not self.waiting:
            if self.source_done:
                self.stopped = True
                self.observer.on_completed()
            return
        turn, message = self.waiting.popleft()
        self.active = True
        self.generation += 1
        gen = self.generation
        floor, observer = self.floor, self.observer
        floor.mark(turn, "message_in")
        observer.on_next(ReplyStarted(turn, message.text))
        first = [True]

        def on_next(e: Any) -> None:
            if gen != self.generation:
                return
            if first[0] and isinstance(e, TextDelta):
                first[0] = False
                floor.mark(turn, "first_token")
            observer.on_next(e)

        def on_error(exc: Exception) -> None:
            if gen != self.generation:
                return
            if not isinstance(exc, _TURN_ERRORS):
                self.fail(exc)
                return
            observer.on_next(ErrorElement(exc, "text"))
            observer.on_next(EndOfTurn(None, Turn(message)))
            done()

        def done() -> None:
            if gen == self.generation:
                self.active = False
                self.next()

        stream = self.text(reactivex.of(MessageElement(message)))
        self.inner.disposable = stream.subscribe(on_next, on_error, done, scheduler=self.scheduler)

    def on_completed(self) -> None:
        self.source_done = True
        self.next()

    def fail(self, error: Exception) -> None:
        if not self.stopped:
            self.dispose()
            self.observer.on_error(error)

    def dispose(self) -> None:
        self.stopped = True
        self.generation += 1
        self.waiting.clear()
        if self.upstream is not None:
            self.upstream.dispose()
        self.inner.dispose()
