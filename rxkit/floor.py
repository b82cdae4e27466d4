"""Floor: who holds the floor in a voice conversation, and when each step of a turn happened.

One :class:`Floor` is shared by the voice stages of one graph
(:func:`duplex_gate`, :func:`barge_in`, the assistant stage and
:func:`playout`): they tell it when the user stopped speaking, when a reply
started and stopped playing, and it answers whether the assistant is busy
(a reply is being prepared or played) and whether the mic should be deaf.
It also keeps the per-turn latency marks and publishes them as
:class:`~rxkit.telemetry.events.VoiceTurnEvent` s plus one
:class:`~rxkit.telemetry.events.VoiceTurnLatency` summary per turn, at the first
audio out. Everything runs on the event loop's thread; nothing here is per
token, and per audio frame only :meth:`Floor.heard` (one deque append).

>>> floor = Floor()
>>> floor.busy
False
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rxkit.elements import EndOfTurn
from rxkit.telemetry.events import (
    EventBus,
    FinalTranscript,
    FirstAudioOut,
    FirstModelToken,
    FirstTTSAudio,
    PreemptiveReply,
    ProviderFirstToken,
    UserSpeechEnded,
    VoiceTurnLatency,
    default_bus,
)

__all__ = ["Floor"]

_KEEP_TURNS = 8  # latency records kept for turns whose reply may still be on its way
# An input frame stamped on the monotonic clock (a microphone's) reaches the graph within this; a file's stamps
# (from 0) are as far from it as the machine's uptime.
_SAME_CLOCK_S = 5.0


class Floor:
    """Shared state of one voice conversation; see the module docstring.

    ``bus``: where the latency events go. ``provider_bus``: the provider's
    bus, where its :class:`~rxkit.telemetry.events.ProviderFirstToken` tells the model's
    own time to first token apart from the framework's.

    The end of the user's speech: when the input's frames are stamped with
    ``time.monotonic()`` (a microphone's are), it is when the speech was at
    the microphone, and the time its frame took to reach the graph is a
    component of its own (``audio_in_s``); a file's clock starts at 0, so
    there it is when the frame arrived.
    """

    def __init__(self, bus: EventBus | None = None, provider_bus: EventBus | None = None) -> None:
        self.bus = bus if bus is not None else default_bus
        self.provider_bus = provider_bus
        self.reset()

    def reset(self) -> None:
        """Forget everything (a graph run starts)."""
        self.turn = 0  # user turns handed to the model so far
        self.playing = False
        self.playing_since = 0.0
        self.played_until = 0.0  # when the last reply stopped playing (monotonic)
        self.in_flight: dict[int, int] = {}  # id(user message) -> turn, for replies not yet over
        self._heard: deque[tuple[float, float]] = deque(maxlen=512)  # (audio end, arrival): ~10 s of 20 ms frames
        self._speech: tuple[float, float, float] | None = None  # (speech end, its frame arrived, detected)
        self._marks: dict[int, dict[str, Any]] = {}
        self._spoken: dict[int, list[tuple[float, str]]] = {}  # turn -> (seconds into its audio, sentence)
        self.playing_turn = 0  # the turn whose reply the speaker started last
        self.wasted = 0  # preemptive replies thrown away since the last final transcript
        # Called with (turn, text heard) when a reply's playback is cut (the assistant saves it).
        self.on_cut: Callable[[int, str], None] | None = None
        # Called with True to pause the reply's playback (suspected barge-in), False to resume it (playout sets it).
        self.on_pause: Callable[[bool], None] | None = None

    # -- who holds the floor -------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A reply is being prepared or played."""
        return bool(self.in_flight) or self.playing

    def deaf(self, now: float, tail: float) -> bool:
        """The mic should not be listened to: a reply plays, or stopped less than ``tail`` seconds ago."""
        return self.playing or now < self.played_until + tail

    def reply_accepted(self, message: Any, turn: int) -> None:
        self.in_flight[id(message)] = turn

    def reply_over(self, end: EndOfTurn | None = None) -> None:
        """A reply ended (its EndOfTurn reached the output), or all were cut (``end=None``)."""
        if end is None:
            self.in_flight.clear()
            return
        user = getattr(end.turn, "user", None)
        if user is not None:
            self.in_flight.pop(id(user), None)

    def playback_started(self, at: float) -> None:
        self.playing = True
        self.playing_since = at

    def pause_playback(self) -> None:
        """The user may be talking over the reply: hold its playback where it is (until resumed or cut)."""
        if self.on_pause is not None:
            self.on_pause(True)

    def resume_playback(self) -> None:
        """It was not the user after all (a cough, a click): play the reply on from where it was held."""
        if self.on_pause is not None:
            self.on_pause(False)

    def playback_finished(self, at: float) -> None:
        self.playing = False
        self.played_until = at

    # -- what was said, and heard -----------------------------------------------------
    def sentence_queued(self, turn: int, offset: float, text: str) -> None:
        """Sentence ``text`` of ``turn``'s reply begins ``offset`` seconds into that reply's audio."""
        spoken = self._spoken.setdefault(turn, [])
        if len(spoken) < 10_000:  # bounded; a reply is a few dozen sentences
            spoken.append((offset, text))
        while len(self._spoken) > _KEEP_TURNS:
            del self._spoken[next(iter(self._spoken))]

    def spoken_before(self, turn: int, seconds: float | None) -> str:
        """The sentences of ``turn``'s reply that began before ``seconds`` of its audio (None: all of them)."""
        # A sentence counts as heard once a tenth of a second of it played.
        parts = [t.strip() for offset, t in self._spoken.get(turn, ()) if seconds is None or offset < seconds - 0.1]
        return " ".join(p for p in parts if p)

    def playback_cut(self, played_s: float) -> None:
        """The speaker stopped the playing reply after ``played_s`` seconds of it were heard."""
        turn = self.playing_turn
        callback = self.on_cut
        if callback is not None and turn:
            callback(turn, self.spoken_before(turn, played_s))

    # -- preemptive replies ----------------------------------------------------------
    def preemptive_over(self, text: str, used: bool, reason: str, held_s: float) -> None:
        """A reply started before the turn's verdict was let out (``used``) or thrown away (see PreemptiveReply)."""
        if not used:
            self.wasted += 1
        self.bus.publish(PreemptiveReply(text=text, used=used, reason=reason, held_s=held_s))

    def preemptive_used(self, turn: int, marks: dict[str, float]) -> None:
        """``turn``'s reply was started before its verdict; ``marks``: the steps it took meanwhile, and when."""
        m = self._marks.get(turn)
        if m is None:
            return
        m["preemptive"] = True
        for step, at in marks.items():
            self.mark(turn, step, at)

    # -- latency marks ----------------------------------------------------------------
    def heard(self, audio_end: float, now: float) -> None:
        """An input frame whose audio ends at ``audio_end`` (its own clock) arrived at ``now``."""
        self._heard.append((audio_end, now))

    def arrival_of(self, audio_time: float) -> float:
        """When the input frame holding ``audio_time`` (audio clock) arrived (monotonic)."""
        for end, arrival in self._heard:
            if end >= audio_time - 1e-6:
                return arrival
        return self._heard[-1][1] if self._heard else time.monotonic()

    def speech_stopped(self, speech_end: float) -> None:
        """The turn detector ended the user's speech, which ended at ``speech_end`` (audio clock)."""
        now = time.monotonic()
        arrived = min(self.arrival_of(speech_end), now)
        end = speech_end if 0.0 <= arrived - speech_end < _SAME_CLOCK_S else arrived  # see the class docstring
        self._speech = (end, arrived, now)
        self.bus.publish(UserSpeechEnded(time=now, turn=self.turn + 1, since_speech_end_s=now - end, speech_end=end))

    def transcribed(self, text: str) -> int:
        """The final transcript of a user turn; returns the turn's number."""
        now = time.monotonic()
        self.turn += 1
        end, arrived, stopped = self._speech if self._speech is not None else (now, now, now)
        self._speech = None
        self._marks[self.turn] = {
            "speech_end": end, "arrived": arrived, "stopped": stopped, "transcript": now, "text": text,
            "wasted": self.wasted,
        }  # fmt: skip
        self.wasted = 0
        while len(self._marks) > _KEEP_TURNS:
            del self._marks[next(iter(self._marks))]
        self.bus.publish(FinalTranscript(time=now, turn=self.turn, since_speech_end_s=now - end, text=text))
        return self.turn

    def mark(self, turn: int, step: str, at: float | None = None) -> None:
        """Record the first time ``step`` happened in ``turn`` (later calls for the same step are ignored).

        Steps: ``message_in``, ``first_token``, ``first_sentence``,
        ``first_tts_audio``, ``audio_queued``.
        """
        marks = self._marks.get(turn)
        if marks is None or step in marks:
            return
        now = time.monotonic() if at is None else at
        marks[step] = now
        event = _STEP_EVENTS.get(step)
        if event is not None:
            self.bus.publish(event(time=now, turn=turn, since_speech_end_s=now - marks["speech_end"]))

    def audio_out(self, turn: int, at: float, device: bool) -> None:
        """The first sample of ``turn``'s reply left the output: publish the mark and the turn's summary."""
        marks = self._marks.get(turn)
        if marks is None or "audio_out" in marks:
            return
        marks["audio_out"] = at
        self.bus.publish(FirstAudioOut(time=at, turn=turn, since_speech_end_s=at - marks["speech_end"], device=device))
        self.bus.publish(self._summary(turn, marks, at))

    def _summary(self, turn: int, m: dict[str, Any], out: float) -> VoiceTurnLatency:
        def span(a: str, b: str) -> float:
            return max(0.0, m[b] - m[a]) if a in m and b in m else 0.0

        preemptive = bool(m.get("preemptive"))
        if preemptive:  # the model ran before the transcript was final: count only what was left of it from then
            t = m["transcript"]
            m = {**m, **{k: max(m[k], t) for k in _MODEL_STEPS if k in m}}
        ttft = None if preemptive else self._provider_ttft(m.get("message_in"), m.get("first_token"))
        parts = {
            "audio_in_s": span("speech_end", "arrived"),
            "vad_hangover_s": span("arrived", "stopped"),
            "stt_s": span("stopped", "transcript"),
            "model_ttft_s": ttft if ttft is not None else span("message_in", "first_token"),
            "model_first_sentence_s": span("first_token", "first_sentence"),
            "tts_first_chunk_s": span("first_sentence", "first_tts_audio"),
            "audio_out_s": max(0.0, out - m["audio_queued"]) if "audio_queued" in m else 0.0,
        }
        total = out - m["speech_end"]
        return VoiceTurnLatency(
            time=out, turn=turn, total_s=total, framework_s=total - sum(parts.values()), transcript=m["text"],
            preemptive=preemptive, preemptive_wasted=m["wasted"], **parts,
        )  # fmt: skip

    def _provider_ttft(self, start: float | None, first: float | None) -> float | None:
        """The provider's own time to first token for the call made between ``start`` and ``first``."""
        if self.provider_bus is None or start is None or first is None:
            return None
        found: float | None = None
        try:
            for event in reversed(self.provider_bus.history):
                if event.time < start:
                    break
                if isinstance(event, ProviderFirstToken) and event.time <= first:
                    found = event.ttft_s  # keep going: the turn's earliest call is the one that answered first
        except RuntimeError:  # published to from another thread meanwhile: no figure rather than a wrong one
            return None
        return found

    def __repr__(self) -> str:
        return f"Floor(turn={self.turn}, busy={self.busy}, playing={self.playing})"


_MODEL_STEPS = ("message_in", "first_token", "first_sentence", "first_tts_audio", "audio_queued")
_STEP_EVENTS: dict[str, Any] = {"first_token": FirstModelToken, "first_tts_audio": FirstTTSAudio}
