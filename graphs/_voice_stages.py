"""Stages only the voice graph uses: the audio source, the assistant (text-mode graph per user turn), timing taps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import reactivex
import reactivex.operators as ops
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxkit.elements import (
    EndOfTurn,
    ErrorElement,
    MessageElement,
    ReplyStarted,
    SpeechResumed,
    SpeechStopped,
    TentativeEnd,
    TextDelta,
    Transcript,
    is_urgent,
)
from rxkit.errors import ConfigError, ProviderError, RxkitError, StateError, ToolError, ValidationFailed
from rxkit.floor import Floor
from rxkit.graph.stage import Stage, StageKind
from rxkit.graphs._preemptive import HeldReply, Preemption
from rxkit.operators import one_turn_at_a_time
from rxkit.state.base import StateStore
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
    text: Callable[[Observable[Any]], Observable[Any]],
    floor: Floor,
    max_waiting: int = 16,
    *,
    store: StateStore | None = None,
    session: str = "default",
    preemption: Preemption | None = None,
    anticipate: Callable[[str], object] | None = None,
    partials: bool = True,
    opening: Callable[[], Awaitable[object]] | None = None,
) -> Stage[Any, Any]:
    """Answer each final :class:`Transcript` with the text-mode graph ``text``, one turn at a time.

    The transcript goes out first (for display), then :class:`ReplyStarted`,
    then the reply's elements, ending with its EndOfTurn. Partial transcripts
    and other elements pass through at once. An urgent element (Interrupt,
    BargeIn) cancels the turn in flight (model call and tools) and drops the
    turns waiting; the cut turn is saved as it was heard, in ``store`` under
    ``session`` (where ``text`` keeps its history; no ``store``, no save): the
    user's words and the sentences of the reply that had begun playing when
    the speaker stopped (nothing of the reply if none had), so that the next
    turn knows what the user interrupted. A reply the model had finished was
    saved whole: the store's ``replace_last`` puts what was heard in its
    place. A turn that fails with a provider, tool, validation or state error
    ends with an ErrorElement and an EndOfTurn; the conversation goes on.
    More than ``max_waiting`` turns waiting is a BufferOverflowError.

    With ``preemption`` (the gate ``text``'s store and tool loop wait on:
    see :mod:`rxkit.graphs._preemptive`), a :class:`TentativeEnd` with words
    starts the reply at once while the assistant is idle, held: nothing of
    it goes on, no tool runs and nothing is saved until the final
    transcript confirms the turn with the same words, and then what it
    sent so far goes on at once. A :class:`SpeechResumed`, another final
    transcript (then answered afresh), a discarded turn, an urgent element
    or the end of the input drops it, unheard and unsaved. TentativeEnd and
    SpeechResumed end in this stage.

    ``anticipate`` (the provider's, such as
    :meth:`~rxkit.providers.local.LocalProvider.anticipate`) is called with
    each partial transcript while the assistant is idle, so that the model
    evaluates the turn's words as they come; not after a reply was cut
    (the history then ends with what was heard, not with what the model
    wrote) until a reply ends whole again. ``partials=False`` ends the
    partial transcripts here (they were made for ``anticipate`` alone).
    ``opening`` runs when the stage starts (the voice graph's: the provider
    prefills the first turn's prompt), and again when a held reply is
    dropped (the model may have finished it, and the provider would take it
    for the conversation's end); it is cancelled on disposal, and its
    failure is left to the first turn to report.

    The turns run on :func:`~rxkit.operators.one_turn_at_a_time`; this stage
    adds what a spoken conversation needs: the floor's marks, and saving
    what was heard of a cut reply.
    """
    if max_waiting < 1:
        raise ConfigError(f"the assistant needs max_waiting >= 1, not {max_waiting}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            heard = _HeardTurns(text, floor, store, session, preemption, anticipate, partials)
            turns = one_turn_at_a_time(
                heard.reply,
                max_pending=max_waiting,
                is_turn=_is_user_turn,
                drop_waiting=True,
                on_cancel=heard.cut_off,
            )

            def on_error(error: Exception) -> None:
                heard.stopped = True
                observer.on_error(error)

            def on_completed() -> None:
                heard.stopped = True
                observer.on_completed()

            sub = turns(heard.arrivals(source)).subscribe(observer.on_next, on_error, on_completed, scheduler=scheduler)
            if opening is not None:
                heard.start(opening)
            return CompositeDisposable(sub, Disposable(heard.close))

        return reactivex.create(subscribe)

    return Stage("text", operator, StageKind.TRANSFORM, "the text-mode graph, one user turn at a time")


class _UserTurn(NamedTuple):
    """A final transcript, numbered by the floor, waiting for the model (or a tentative one, ``held``)."""

    turn: int
    message: Message
    held: HeldReply | None = None


def _is_user_turn(x: Any) -> bool:
    return type(x) is _UserTurn


class _HeardTurns:
    """The voice side of the assistant's turns: the floor's marks, and saving what was heard of a cut reply."""

    def __init__(
        self,
        text: Callable[[Observable[Any]], Observable[Any]],
        floor: Floor,
        store: StateStore | None,
        session: str,
        preemption: Preemption | None = None,
        anticipate: Callable[[str], object] | None = None,
        partials: bool = True,
    ) -> None:
        self.text = text
        self.preemption = preemption
        self.anticipate = anticipate
        self.partials = partials
        if preemption is not None:
            preemption.on_over = self.preemptive_over
        self.store = store
        self.session = session
        self.floor = floor
        self.stopped = False  # the stage ended or was disposed: nothing more is saved
        self.cut: _UserTurn | None = None  # a cut turn waiting to learn what of it was heard
        # A reply was cut (or replaced by what of it was heard): the history no longer ends as the model last
        # wrote it, so what ``anticipate`` would prefill is not the next prompt, until a reply ends whole again.
        self.diverged = False
        self.opening: asyncio.Task[None] | None = None  # the first turn's head start (start())
        self.open: Callable[[], Awaitable[object]] | None = None  # what start() runs, again after a dropped reply
        self.saved: tuple[int, int] | None = None  # the last turn saved whole: (turn, history length after it)
        self.saving: asyncio.Future[Any] | None = None  # its save; the next turn waits for it
        floor.on_cut = self.heard

    def arrivals(self, source: Observable[Any]) -> Observable[Any]:
        """``source``, with a numbered :class:`_UserTurn` after each final, non-blank transcript."""

        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            floor = self.floor
            preemption = self.preemption
            anticipate = self.anticipate

            def on_next(x: Any) -> None:
                if isinstance(x, Transcript):
                    if not x.final:
                        if anticipate is not None and self.idle() and not self.diverged:
                            anticipate(x.text)
                        if self.partials:
                            observer.on_next(x)
                        return
                    observer.on_next(x)
                    if x.text.strip():
                        self.final(x.text, observer)
                    return
                if preemption is not None and isinstance(x, (TentativeEnd, SpeechResumed, SpeechStopped)):
                    if type(x) is SpeechStopped:
                        observer.on_next(x)  # the others are for this stage alone: they end here
                    self.tentative(x, observer)
                    return
                if is_urgent(x):
                    floor.reply_over(None)  # every reply is cut; the turn machine cancels the one in flight
                observer.on_next(x)

            def on_completed() -> None:
                if preemption is not None:
                    preemption.drop("ended")
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    def final(self, text: str, observer: abc.ObserverBase[Any]) -> None:
        """A final transcript: its turn is numbered, and answered, by the held reply if it answered these words."""
        floor, preemption = self.floor, self.preemption
        held = preemption.held if preemption is not None else None
        if preemption is not None and held is not None and (held.text != text or held.turn != floor.turn + 1):
            preemption.drop("transcript_changed")  # not what was answered: answered afresh
            held = None
        turn = floor.transcribed(text)
        if preemption is None or held is None:
            message = Message.user(text)
            floor.reply_accepted(message, turn)
            observer.on_next(_UserTurn(turn, message))
            return
        floor.reply_accepted(held.message, turn)
        floor.preemptive_used(turn, held.marks)
        preemption.release()  # what it sent so far goes on now

    def idle(self) -> bool:
        """No reply is playing, running, held or waiting to learn what of it was heard."""
        preemption = self.preemption
        return not self.floor.busy and self.cut is None and (preemption is None or preemption.held is None)

    def tentative(self, x: Any, observer: abc.ObserverBase[Any]) -> None:
        """Start a held reply at a TentativeEnd with words, if idle; drop it when the turn goes on or is dropped."""
        preemption = self.preemption
        assert preemption is not None
        if isinstance(x, TentativeEnd):
            floor = self.floor
            if x.text.strip() and self.idle():
                held = preemption.hold(Message.user(x.text), floor.turn + 1)
                observer.on_next(_UserTurn(held.turn, held.message, held))
        elif isinstance(x, SpeechResumed):
            preemption.drop("speech_resumed")
        elif x.discarded:
            preemption.drop("discarded")

    def reply(self, user: _UserTurn) -> Observable[Any]:
        """One turn: ReplyStarted, then ``text``'s answer to ``user``; a turn error ends it in-band."""
        turn, message, held = user

        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            if self.cut is not None:  # the speaker has not reported yet: do not let this turn load before the save
                self.heard(self.cut.turn, "")
            floor = self.floor
            if held is not None:
                observer = held.wrap(observer)

            def mark(step: str) -> None:
                if held is not None and not held.released:
                    held.marks.setdefault(step, time.monotonic())  # the floor has no turn for it yet
                else:
                    floor.mark(turn, step)

            mark("message_in")
            observer.on_next(ReplyStarted(turn, message.text))
            first = [True]

            def on_next(e: Any) -> None:
                if first[0] and isinstance(e, TextDelta):
                    first[0] = False
                    mark("first_token")
                elif isinstance(e, EndOfTurn) and e.turn is not None and e.response is not None:
                    self.saved = (turn, len(e.turn.history) + len(e.turn.messages_to_save()))  # save_state saved it
                    self.diverged = False
                observer.on_next(e)

            def on_error(exc: Exception) -> None:
                if not isinstance(exc, _TURN_ERRORS):
                    observer.on_error(exc)
                    return
                observer.on_next(ErrorElement(exc, "text"))
                observer.on_next(EndOfTurn(None, Turn(message)))
                observer.on_completed()

            stream = self.text(reactivex.of(MessageElement(message)))
            saving = self.saving
            if saving is not None and not saving.done():  # a cut turn is being saved: load the history after it
                stream = reactivex.concat(reactivex.from_future(saving).pipe(ops.ignore_elements()), stream)
            subscription = stream.subscribe(on_next, on_error, observer.on_completed, scheduler=scheduler)
            if held is None:
                return subscription
            held.inner.disposable = subscription  # what dropping it cancels
            return held.inner

        return Observable(subscribe)

    def cut_off(self, user: _UserTurn) -> None:
        """An urgent element cut ``user``'s turn while it ran."""
        self.diverged = True
        if user.held is not None and not user.held.released:
            assert self.preemption is not None
            self.preemption.drop("interrupted")  # not heard, not confirmed: nothing of it is saved
            return
        floor = self.floor
        if floor.playing and floor.playing_turn == user.turn:
            self.cut = user  # the speaker will say how much of it was heard (heard())
        else:
            self.save_cut(user.message, "")  # none of its reply was playing: only the question stays

    def heard(self, turn: int, text: str) -> None:
        """The speaker stopped ``turn``'s reply; ``text`` is what of it had begun playing."""
        cut = self.cut
        if cut is not None and cut.turn == turn:
            self.cut = None
            self.save_cut(cut.message, text)
            return
        saved = self.saved
        if saved is not None and saved[0] == turn and text and text != self.floor.spoken_before(turn, None):
            # The model had finished, and the whole reply was saved: keep only what was heard of it.
            self.saved = None
            self.diverged = True
            self.replace_reply(text, saved[1])

    def replace_reply(self, heard: str, length: int) -> None:
        self.save(lambda store: store.replace_last(self.session, Message.assistant(heard), expected_length=length))

    def save_cut(self, message: Message, heard: str) -> None:
        turn = [message, Message.assistant(heard)] if heard else [message]
        self.save(lambda store: store.append_turn(self.session, turn))

    def save(self, operation: Callable[[StateStore], Awaitable[Any]]) -> None:
        """Start ``operation(store)`` on the loop, if there is a store; the next turn waits for it."""
        store = self.store
        if store is None or self.stopped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.saving = loop.create_task(_quietly(operation(store)))

    def start(self, opening: Callable[[], Awaitable[object]]) -> None:
        """Run ``opening`` on the loop (none running: nothing), until it ends or the stage is closed."""
        self.open = opening
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.opening is not None:
            self.opening.cancel()
        self.opening = loop.create_task(_head_start(opening), name="rxkit-voice-opening")

    def preemptive_over(self, text: str, used: bool, reason: str, held_s: float) -> None:
        """A held reply was let out or dropped. A dropped one the model may have finished: the provider then
        takes it for the conversation's end, which the store never saw; the opening is prefilled again from the
        store (the turn's partials extend it)."""
        self.floor.preemptive_over(text, used, reason, held_s)
        if not used and self.open is not None and not self.stopped:
            self.start(self.open)

    def close(self) -> None:
        self.stopped = True
        if self.opening is not None:
            self.opening.cancel()
            self.opening = None
        if self.preemption is not None:
            self.preemption.drop("ended")  # disposed while holding one: nothing of it may wait on (next run)
        if self.floor.on_cut == self.heard:
            self.floor.on_cut = None


async def _head_start(opening: Callable[[], Awaitable[object]]) -> None:
    """A head start only: a store or template that fails here fails the first turn, which reports it."""
    with contextlib.suppress(RxkitError, OSError):
        await opening()


async def _quietly(saving: Any) -> None:
    """Save what was heard of a cut turn; a store that fails here fails the next turn's own load or save,
    reported there (and a session another writer changed meanwhile is left as it is)."""
    with contextlib.suppress(StateError, OSError):
        await saving
