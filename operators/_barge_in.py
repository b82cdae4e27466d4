"""barge_in: the user speaks while the assistant holds the floor -> pause, then interrupt or resume the reply."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import Control, Interrupt, SpeechStarted, SpeechStopped, Utterance, VadFrame
from rxkit.errors import ConfigError
from rxkit.floor import Floor
from rxkit.graph.stage import Stage, StageKind

__all__ = ["BARGE_IN_STRATEGIES", "BargeIn", "FalseInterruption", "barge_in"]

BARGE_IN_STRATEGIES = ("immediate", "after_sentence", "ignore")
"""What user speech during a reply does: stop it at once, stop it after the sentence playing, or nothing."""


class BargeIn(Interrupt):
    """An :class:`~rxkit.elements.Interrupt` caused by the user speaking over the assistant.

    Every stage treats it as an Interrupt (model call, tools and synthesis are
    cancelled, queued audio dropped); ``strategy`` ``"after_sentence"`` tells
    :func:`playout` to let the sentence playing finish first.
    """

    __slots__ = ("strategy",)

    def __init__(self, strategy: str = "immediate") -> None:
        self.reason = "barge-in"
        self.strategy = strategy


class FalseInterruption(Control):
    """Speech over the reply that was never confirmed (a cough, a click, a noise burst): the reply goes on.

    ``speech_s``: how much of it was tagged as speech. Its turn is dropped
    (its :class:`~rxkit.elements.SpeechStopped` says ``discarded``), so the
    question being answered stays the one answered.
    """

    __slots__ = ("speech_s",)

    def __init__(self, speech_s: float = 0.0) -> None:
        self.speech_s = speech_s


_IDLE, _SUSPECT, _DISMISSED = 0, 1, 2  # no speech over a reply; speech not yet confirmed; judged a false alarm


def barge_in(
    floor: Floor, strategy: str = "immediate", *, confirm_ms: float = 0.0, resume_ms: float = 500.0
) -> Stage[Any, Any]:
    """Put after ``turn_detector()``: user speech while the assistant is busy interrupts the reply.

    Busy means a reply is being prepared or played (see :class:`Floor`).
    ``strategy``: ``"immediate"`` stops the reply at once, ``"after_sentence"``
    once the sentence playing has ended, ``"ignore"`` lets it go on (what the
    user said is answered after it).

    ``confirm_ms``: how much speech makes a barge-in (LiveKit's minimum
    interruption duration). With 0 the :class:`BargeIn` goes out at
    :class:`SpeechStarted`. Above 0, :class:`SpeechStarted` only pauses the
    speaker (``"immediate"``; see :meth:`Floor.pause_playback`) and the
    BargeIn goes out, just before the frame, once the turn's frames
    (``turn_detector(frames=True)``) hold ``confirm_ms`` of speech, or at
    :class:`SpeechStopped` when a turn without frames had that much. Speech
    that ends short of it is a false alarm (a cough, a click): the speaker
    resumes as soon as ``resume_ms`` of non-speech followed it (or at the
    SpeechStopped), a :class:`FalseInterruption` goes out, and the turn is
    dropped (its SpeechStopped is passed on marked ``discarded``, its
    Utterance not at all), so nothing of the reply or the question is lost.
    The BargeIn is urgent, so it passes every queue on its way.

    Each :class:`SpeechStopped` of a kept turn is noted on the ``floor``
    (the end of the user's speech, for the latency figures). Everything
    else passes through.

    >>> stage = barge_in(Floor(), "immediate", confirm_ms=500)
    """
    if strategy not in BARGE_IN_STRATEGIES:
        raise ConfigError(f"barge-in strategy must be one of {', '.join(BARGE_IN_STRATEGIES)}, not {strategy!r}")
    if confirm_ms < 0 or resume_ms <= 0:
        raise ConfigError(f"barge_in needs confirm_ms >= 0 and resume_ms > 0, not {confirm_ms} and {resume_ms}")
    pause = strategy == "immediate"

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            s: dict[str, Any] = {
                "phase": _IDLE, "speech_ms": 0.0, "quiet_ms": 0.0, "drop_utterance": False, "since": 0.0,
                "cut_turn": 0,
            }  # fmt: skip

            def cut() -> None:
                s["phase"] = _IDLE
                s["cut_turn"] = floor.playing_turn if floor.playing else 0
                floor.reply_over(None)  # every reply in flight is being cut
                observer.on_next(BargeIn(strategy))  # urgent: the speaker flushes, and its pause ends with it

            def finishing() -> bool:
                """Only the reply already cut plays on, to the end of its sentence (after_sentence): more
                speech from the user is the same barge-in going on, not a new one that would stop it now."""
                turn = s["cut_turn"]
                return bool(turn) and floor.playing and floor.playing_turn == turn and not floor.in_flight

            def dismiss() -> None:
                s["phase"] = _DISMISSED
                if pause:
                    floor.resume_playback()
                observer.on_next(FalseInterruption(s["speech_ms"] / 1000))

            def on_frame(x: VadFrame) -> None:
                if x.timestamp < s["since"]:
                    return  # the turn's pre-roll: before the speech started
                ms = x.duration * 1000
                if x.speech:
                    s["speech_ms"] += ms
                    s["quiet_ms"] = 0.0
                    if s["speech_ms"] >= confirm_ms - 1e-6:
                        cut()
                else:
                    s["quiet_ms"] += ms
                    if s["phase"] == _SUSPECT and s["quiet_ms"] >= resume_ms - 1e-6:
                        dismiss()

            def on_next(x: Any) -> None:
                phase = s["phase"]
                if phase != _IDLE and type(x) is VadFrame:
                    on_frame(x)
                elif isinstance(x, SpeechStarted):
                    if strategy != "ignore" and floor.busy and not finishing():
                        if confirm_ms <= 0:
                            cut()
                        else:
                            s.update(phase=_SUSPECT, speech_ms=0.0, quiet_ms=0.0, since=x.timestamp - 1e-6)
                            if pause:
                                floor.pause_playback()
                elif isinstance(x, SpeechStopped):
                    if phase != _IDLE:
                        if not x.discarded and max(s["speech_ms"], x.speech_s * 1000) >= confirm_ms - 1e-6:
                            cut()  # a turn without frames: its length confirms it
                        else:
                            if phase == _SUSPECT:
                                dismiss()
                            s["phase"] = _IDLE
                            s["drop_utterance"] = not x.discarded
                            x = SpeechStopped(x.timestamp, x.speech_s, x.reason, discarded=True)
                    if not x.discarded:
                        floor.speech_stopped(x.timestamp)
                elif isinstance(x, Utterance) and s["drop_utterance"]:
                    s["drop_utterance"] = False
                    return
                observer.on_next(x)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    confirm = f", confirmed after {confirm_ms:g} ms of speech" if confirm_ms > 0 else ""
    return Stage("barge_in", operator, StageKind.TRANSFORM, f"user speech interrupts the reply{confirm}: {strategy}")
