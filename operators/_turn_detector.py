"""turn_detector: speech-started / speech-stopped events and utterances from VAD-tagged frames."""

from __future__ import annotations

import concurrent.futures
from collections import deque
from typing import Any, Protocol

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.elements import (
    AudioFrame,
    EndOfStream,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TentativeEnd,
    Utterance,
    VadFrame,
)
from rxkit.errors import AudioError, ConfigError, GraphError, RxkitError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import call_threadsafe, loop_of, resolve_scheduler

# Tentative ends per turn, and the turn length after which there are none (LiveKit Agents' preemptive
# generation has the same limits: 3 tries, 10 s): a long turn is likely to go on, and each pause the user
# speaks on after has the turn so far recognised again.
MAX_TENTATIVE = 3
TENTATIVE_UNTIL_S = 10.0


class EndOfTurnModel(Protocol):
    """What :func:`turn_detector` asks whether a turn is complete (:class:`rxkit.audio.turn_model.SmartTurn`).

    ``submit`` judges a turn's 16-bit PCM off the caller's thread; its future holds the probability that
    the turn is complete, which counts as complete from ``threshold`` up.
    """

    threshold: float

    def submit(self, pcm: bytes, sample_rate: int, channels: int) -> concurrent.futures.Future[float]: ...


def turn_detector(
    start_ms: float = 200,
    stop_ms: float = 700,
    min_speech_ms: float = 300,
    max_turn_s: float = 30.0,
    pre_roll_ms: float = 300,
    *,
    frames: bool = False,
    end_of_turn: EndOfTurnModel | None = None,
    vad_stop_ms: float = 200,
    incomplete_stop_ms: float = 1500,
    wait_for_model: bool = False,
    tentative: bool = False,
    tentative_ms: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Stage[Any, Any]:
    """Find user turns in :class:`VadFrame` s (from :func:`vad`).

    A turn starts after ``start_ms`` of unbroken speech: :class:`SpeechStarted`
    (its ``timestamp`` is the first speech frame's). It ends after ``stop_ms``
    of unbroken non-speech, near ``max_turn_s`` (at the first pause in the
    turn's last fifth, at most 5 s, so no word is cut in two; at
    ``max_turn_s`` itself only if there was none), at
    :class:`EndOfStream` or at the end of the input, or when no frame came
    for ``stop_ms`` on ``scheduler`` (the source stalled):
    :class:`SpeechStopped`, then an :class:`Utterance` with the turn's audio,
    ``pre_roll_ms`` before the speech included. A turn with less than
    ``min_speech_ms`` of speech is ``discarded``: SpeechStopped says so and no
    Utterance follows. With ``frames=True`` the turn's frames (pre-roll
    first) are also emitted between SpeechStarted and SpeechStopped, for
    streaming STT. Other elements pass through.

    With an ``end_of_turn`` model (:class:`~rxkit.audio.turn_model.SmartTurn`),
    ``vad_stop_ms`` of silence asks it whether the turn sounds complete: if
    so, the turn ends there (reason ``"end_of_turn_model"``); if not, the
    silence that ends it grows to ``incomplete_stop_ms`` (the user may be
    thinking); until the verdict is in, ``stop_ms`` still ends it, so a slow
    model never makes a turn end later than silence alone would. The model
    runs on its own thread while frames keep flowing; a verdict that comes
    after the user spoke again, or after the turn ended, is ignored. ``wait_for_model=True`` waits for each verdict
    instead (for input read faster than real time, such as a file: the
    turns are then the same on every run, as if the model took no time).

    ``tentative=True`` (for preemptive generation) also marks each pause that
    may end the turn: once ``tentative_ms`` (default: ``vad_stop_ms``; at
    most that) of silence follows at least
    ``min_speech_ms`` of speech (when the model is asked, or, without one, long
    before ``stop_ms``), a :class:`TentativeEnd` goes out, at most one per
    pause, ``MAX_TENTATIVE`` (3) per turn and none once the turn is longer
    than ``TENTATIVE_UNTIL_S`` (10 s); with a shorter ``tentative_ms``, once
    those three are spent on short pauses the user spoke on after, up to
    three more at pauses of ``vad_stop_ms`` (so the turn's real end still
    gets one); if the user speaks again in that
    pause, a :class:`SpeechResumed` follows the first speech frame. The
    :class:`SpeechStopped` that ends the turn confirms the last TentativeEnd.

    >>> detect = turn_detector(end_of_turn=SmartTurn(), vad_stop_ms=200, incomplete_stop_ms=1500)  # doctest: +SKIP
    """
    for name, value in (
        ("start_ms", start_ms), ("stop_ms", stop_ms), ("max_turn_s", max_turn_s), ("vad_stop_ms", vad_stop_ms),
        ("incomplete_stop_ms", incomplete_stop_ms),
    ):  # fmt: skip
        if value <= 0:
            raise ConfigError(f"turn_detector {name} must be positive, not {value}")
    if tentative_ms is not None and not 0 < tentative_ms <= vad_stop_ms:
        raise ConfigError(f"turn_detector tentative_ms must be above 0 and at most vad_stop_ms, not {tentative_ms}")
    tentative_at = vad_stop_ms if tentative_ms is None else tentative_ms
    for name, value in (("min_speech_ms", min_speech_ms), ("pre_roll_ms", pre_roll_ms)):
        if value < 0:
            raise ConfigError(f"turn_detector {name} must be zero or more, not {value}")
    max_turn_ms = max_turn_s * 1000
    # A turn that runs long is split at the first pause in its last fifth (at most its last 5 s), so that no
    # word is cut in two (and heard in both halves); only speech without a pause is cut at max_turn_s itself.
    split_ms = max_turn_ms - min(5000.0, max_turn_ms / 5)

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], sub_scheduler: abc.SchedulerBase | None = None) -> Any:
            try:
                sch: abc.SchedulerBase | None = resolve_scheduler(scheduler, sub_scheduler)
            except GraphError:  # no scheduler and no loop: frames alone end turns (no stall timeout)
                sch = None
            timer = SerialDisposable()
            # Bounded by time: pre-roll by pre_roll_ms, the speech run by start_ms, a turn by max_turn_s.
            preroll: deque[VadFrame] = deque(maxlen=int(pre_roll_ms // 10) + 2)  # VAD frames are >= 10 ms
            run: list[VadFrame] = []
            turn: list[VadFrame] = []
            s: dict[str, Any] = {
                "speaking": False, "preroll_ms": 0.0, "run_ms": 0.0, "turn_ms": 0.0, "speech_ms": 0.0,
                "silence_ms": 0.0, "silence_ts": 0.0, "last": None,
                "pause": 0, "asked": False, "inflight": None, "stopped": False, "limit_ms": stop_ms, "tentative": False,
                "tentatives": 0,
            }  # fmt: skip
            # A verdict comes back on the model's thread: hand it to the loop's (or to the virtual clock).
            loop = loop_of(sch) if isinstance(sch, AsyncIOScheduler) else None
            inline = wait_for_model or sch is None

            def to_preroll(frame: VadFrame, ms: float) -> None:
                preroll.append(frame)
                s["preroll_ms"] += ms
                while preroll and s["preroll_ms"] > pre_roll_ms + 1e-6:
                    s["preroll_ms"] -= preroll.popleft().duration * 1000

            def start_turn() -> None:
                turn[:] = [*preroll, *run]
                s.update(speaking=True, turn_ms=s["preroll_ms"] + s["run_ms"], speech_ms=s["run_ms"], silence_ms=0.0,
                         tentatives=0)  # fmt: skip
                started = run[0].timestamp
                preroll.clear()
                run.clear()
                s["preroll_ms"] = s["run_ms"] = 0.0
                observer.on_next(SpeechStarted(started))
                if frames:
                    for f in turn:
                        observer.on_next(f)
                if sch is not None:
                    s["last"] = sch.now
                    timer.disposable = sch.schedule_relative(stop_ms / 1000, check_stalled)

            def may_be_tentative(silent: float) -> bool:
                # The first MAX_TENTATIVE at tentative_ms; once they are spent on short pauses (the user spoke on
                # after each), up to MAX_TENTATIVE more, each at a pause as long as the model's (vad_stop_ms).
                early = s["tentatives"] < MAX_TENTATIVE
                return (
                    silent >= (tentative_at if early else vad_stop_ms)
                    and s["tentatives"] < (MAX_TENTATIVE if early or tentative_at >= vad_stop_ms else 2 * MAX_TENTATIVE)
                    and s["speech_ms"] >= min_speech_ms - 1e-6
                    and s["turn_ms"] <= TENTATIVE_UNTIL_S * 1000 + 1e-6
                )

            def ask_model() -> None:
                """Silence reached vad_stop_ms: is the turn complete? At most one question in flight."""
                assert end_of_turn is not None
                if s["inflight"] is not None:
                    return  # asked again on the next silent frame once the stale verdict is in
                s["asked"] = True
                first = turn[0]
                try:
                    future = end_of_turn.submit(b"".join(f.pcm for f in turn), first.sample_rate, first.channels)
                except Exception as exc:  # noqa: BLE001 - becomes on_error
                    fail(exc)
                    return
                pause = s["pause"]
                if inline:
                    concurrent.futures.wait([future])
                    verdict(pause, future)
                    return
                s["inflight"] = future

                def hand_over(done: concurrent.futures.Future[float]) -> None:
                    if loop is not None:
                        try:
                            call_threadsafe(loop, verdict, pause, done)
                        except RuntimeError:  # the loop closed meanwhile: nobody is listening
                            pass
                    elif sch is not None:
                        sch.schedule(lambda *_: verdict(pause, done))

                future.add_done_callback(hand_over)

            def verdict(pause: int, future: concurrent.futures.Future[float]) -> None:
                if future is s["inflight"]:
                    s["inflight"] = None
                if s["stopped"] or future.cancelled():
                    return
                exc = future.exception()
                if exc is not None:
                    fail(exc)
                    return
                if pause == s["pause"] and s["speaking"]:  # the same pause, still silent: the verdict holds
                    assert end_of_turn is not None
                    if future.result() >= end_of_turn.threshold:
                        end_turn("end_of_turn_model")
                    else:  # heard as unfinished: wait longer in this pause
                        s["limit_ms"] = max(stop_ms, incomplete_stop_ms)
                elif s["speaking"] and not s["asked"] and s["silence_ms"] >= vad_stop_ms - 1e-6:
                    ask_model()  # a later pause waited for this stale verdict: its turn now

            def fail(exc: BaseException) -> None:
                if s["stopped"]:
                    return
                s["stopped"] = True
                timer.dispose()
                error = exc if isinstance(exc, RxkitError) else AudioError(f"the end-of-turn model failed: {exc!r}")
                observer.on_error(error)

            def end_turn(reason: str) -> None:
                s["pause"] += 1  # a verdict still coming is about an older pause
                s["asked"] = s["tentative"] = False
                s["limit_ms"] = stop_ms
                timer.disposable = Disposable()
                last = turn[-1]
                stop_ts = s["silence_ts"] if s["silence_ms"] > 0 else last.timestamp + last.duration
                discarded = s["speech_ms"] < min_speech_ms
                audio = b"".join(f.pcm for f in turn)
                first = turn[0]
                turn.clear()
                s.update(speaking=False, silence_ms=0.0)
                observer.on_next(SpeechStopped(stop_ts, s["speech_ms"] / 1000, reason, discarded))
                if not discarded:
                    observer.on_next(Utterance(audio, first.sample_rate, first.channels, first.timestamp, reason))

            def check_stalled(_: abc.SchedulerBase, __: Any = None) -> None:
                if not s["speaking"] or sch is None:
                    return
                idle = (sch.now - s["last"]).total_seconds()
                if idle * 1000 >= stop_ms - 1e-6:
                    end_turn("stalled")
                else:
                    timer.disposable = sch.schedule_relative(stop_ms / 1000 - idle, check_stalled)

            def on_frame(frame: VadFrame) -> None:
                ms = frame.duration * 1000
                if not s["speaking"]:
                    if frame.speech:
                        run.append(frame)
                        s["run_ms"] += ms
                        if s["run_ms"] >= start_ms - 1e-6:
                            start_turn()
                        return
                    for f in run:  # a false start: it becomes history
                        to_preroll(f, f.duration * 1000)
                    run.clear()
                    s["run_ms"] = 0.0
                    to_preroll(frame, ms)
                    return
                first = turn[0]
                if (frame.sample_rate, frame.channels) != (first.sample_rate, first.channels):
                    end_turn("format_change")
                    on_frame(frame)
                    return
                turn.append(frame)
                s["turn_ms"] += ms
                if sch is not None:
                    s["last"] = sch.now
                if frames:
                    observer.on_next(frame)
                if frame.speech:
                    s["speech_ms"] += ms
                    if s["silence_ms"]:
                        s["silence_ms"] = 0.0
                        s["pause"] += 1  # speech again: a verdict on the pause before is void
                        s["asked"] = False
                        s["limit_ms"] = stop_ms
                        if s["tentative"]:
                            s["tentative"] = False
                            observer.on_next(SpeechResumed(frame.timestamp))
                else:
                    if s["silence_ms"] == 0.0:
                        s["silence_ts"] = frame.timestamp
                    s["silence_ms"] += ms
                    silent = s["silence_ms"] + 1e-6
                    if tentative and not s["tentative"] and may_be_tentative(silent):
                        s["tentative"] = True
                        s["tentatives"] += 1
                        observer.on_next(TentativeEnd(s["silence_ts"]))
                    if silent >= vad_stop_ms and end_of_turn is not None and not s["asked"]:
                        ask_model()
                        if not s["speaking"] or s["stopped"]:
                            return  # the model (waited for) ended the turn, or failed
                if s["silence_ms"] >= s["limit_ms"] - 1e-6:
                    end_turn("silence")
                elif s["turn_ms"] >= max_turn_ms - 1e-6 or (s["turn_ms"] >= split_ms and not frame.speech):
                    end_turn("max_turn")  # near the limit, at the first pause: never inside a word if it can help

            def on_next(x: Any) -> None:
                if s["stopped"]:
                    return
                if isinstance(x, VadFrame):
                    on_frame(x)
                elif isinstance(x, AudioFrame):
                    timer.dispose()
                    msg = "turn_detector needs frames tagged by the vad() stage: pipe(vad(), turn_detector())"
                    observer.on_error(ConfigError(msg))
                else:
                    if isinstance(x, EndOfStream) and s["speaking"]:
                        end_turn("end_of_stream")
                    observer.on_next(x)

            def on_error(exc: Exception) -> None:
                if s["stopped"]:
                    return
                s["stopped"] = True
                timer.dispose()
                observer.on_error(exc)

            def on_completed() -> None:
                if s["stopped"]:
                    return
                if s["speaking"]:
                    end_turn("end_of_stream")
                s["stopped"] = True
                timer.dispose()
                observer.on_completed()

            def dispose() -> None:
                s["stopped"] = True
                inflight, s["inflight"] = s["inflight"], None
                if inflight is not None:
                    inflight.cancel()  # not started yet: the worker skips it

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)
            return CompositeDisposable(sub, timer, Disposable(dispose))

        return reactivex.create(subscribe)

    return Stage("turn_detector", operator, StageKind.TRANSFORM, "VAD frames -> speech events and utterances")
