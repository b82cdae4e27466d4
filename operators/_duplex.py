"""duplex: a speech-to-speech session as a stage; heard: tells it what the speaker really played."""

from __future__ import annotations

import asyncio
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxkit.audio.convert import FrameConverter
from rxkit.duplex.session import DuplexSession
from rxkit.elements import (
    AudioFrame,
    ImageFrame,
    Interrupt,
    MessageElement,
    PlaybackFinished,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    Transcript,
)
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import loop_of

__all__ = ["duplex", "heard"]


def duplex(session: DuplexSession) -> Stage[Any, Any]:
    """Run ``session`` for the life of the subscription: input elements in, its output out.

    In: :class:`~rxkit.elements.AudioFrame` (any rate or channel count:
    converted to the session's input rate, mono; frames already in it pass
    untouched), user text (:class:`~rxkit.elements.Transcript` final,
    :class:`~rxkit.elements.TextDelta`, a user
    :class:`~rxkit.elements.MessageElement`), :class:`~rxkit.elements.ImageFrame`.
    With ``session.server_vad`` False, rxkit's turn detector takes turns: a
    :class:`~rxkit.elements.SpeechStopped` commits the user's audio, a
    :class:`~rxkit.elements.SpeechStarted` while the model speaks is a
    barge-in (an :class:`~rxkit.elements.Interrupt` goes out first and the
    reply is cancelled), and so is an Interrupt from upstream. Control
    elements pass through. Out: the session's audio, transcripts of both
    sides, text, tool calls and results, errors in-band, and an EndOfTurn per
    reply. The socket opens at subscribe and closes on dispose; when the
    input completes, the stage completes after the reply in flight.

    >>> from rxkit.duplex import OpenAIRealtime
    >>> stage = duplex(OpenAIRealtime(api_key="sk-test-000000000000"))
    """
    convert = FrameConverter(session.input_rate, 1)
    local_turns = not session.server_vad

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            loop = loop_of(scheduler)
            send_audio = session.send_audio
            rate = session.input_rate

            def on_next(x: Any) -> None:
                if isinstance(x, AudioFrame):
                    if x.sample_rate != rate or x.channels != 1 or type(x.pcm) is not bytes:
                        x = convert(x)
                    send_audio(x.pcm)
                    return
                if x.__class__ is TextDelta or (isinstance(x, Transcript) and x.final):
                    session.send_text(x.text)
                elif isinstance(x, MessageElement) and x.message.role == "user":
                    session.send_text(x.message.text)
                elif isinstance(x, ImageFrame):
                    session.send_image(x)
                elif isinstance(x, Interrupt):
                    session.interrupt()
                    observer.on_next(x)
                elif local_turns and isinstance(x, SpeechStarted):
                    if session.speaking:  # rxkit's barge-in: cut the reply, flush the speaker
                        session.interrupt()
                        observer.on_next(Interrupt("barge-in"))
                    observer.on_next(x)
                elif local_turns and isinstance(x, SpeechStopped):
                    if x.discarded:  # a cough or a click: its audio must not open the next turn
                        session.discard()
                    else:
                        session.commit()
                    observer.on_next(x)
                elif getattr(x, "control", False):
                    observer.on_next(x)

            def done(task: asyncio.Task[None]) -> None:
                if task.cancelled():
                    return
                error = task.exception()
                if error is not None:
                    observer.on_error(error if isinstance(error, Exception) else RuntimeError(repr(error)))
                else:
                    observer.on_completed()

            task = loop.create_task(session.run(observer.on_next))
            task.add_done_callback(done)

            def cancel() -> None:
                if not task.done():
                    task.cancel()

            def on_error(error: Exception) -> None:
                cancel()
                observer.on_error(error)

            inner = source.subscribe(on_next, on_error, session.finish, scheduler=scheduler)

            return CompositeDisposable(inner, Disposable(cancel))

        return reactivex.create(subscribe)

    return Stage("duplex", operator, StageKind.BIDIRECTIONAL, f"{session.name} {session.model}")


def heard(session: DuplexSession) -> Stage[Any, Any]:
    """Put after the speaker (or file sink): each :class:`~rxkit.elements.PlaybackFinished` tells ``session``
    how much of the reply was played, so an interrupted reply is truncated at what the user heard.

    Everything passes through.

    >>> from rxkit.duplex import OpenAIRealtime
    >>> stage = heard(OpenAIRealtime(api_key="sk-test-000000000000"))
    """

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            def on_next(x: Any) -> None:
                if isinstance(x, PlaybackFinished):
                    session.played(x.played_s, x.interrupted)
                observer.on_next(x)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return Stage("heard", operator, StageKind.TRANSFORM, "truncates an interrupted reply at what was played")
