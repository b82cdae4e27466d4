"""Typed events and a bounded, non-blocking event bus.

Stages, providers, validators and stores publish events here; metrics,
notebooks and logs read them. Publishing costs one ``deque.append`` per
listener plus one scheduled drain per batch: a slow listener never blocks
the publisher, and each listener's backlog is bounded (oldest events are
dropped first and counted in ``EventBus.dropped``).

Events are published per call, per stage and per turn, never per token.

>>> bus = EventBus()
>>> seen = []
>>> unsubscribe = bus.subscribe(seen.append)
>>> bus.publish(StageStarted(stage="llm"))
>>> bus.flush(); [type(e).__name__ for e in seen]
['StageStarted']
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CostUnknown",
    "Event",
    "EventBus",
    "PromptAssembled",
    "RateLimit",
    "RateLimitsUpdated",
    "ProviderCallCompleted",
    "ProviderCallFailed",
    "ProviderCallStarted",
    "ProviderFirstToken",
    "StageCompleted",
    "StageDisposed",
    "StageFailed",
    "StageStarted",
    "StateLoaded",
    "StateSaved",
    "StructuredResult",
    "StructuredRetry",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ToolCallPending",
    "ToolCallStarted",
    "TurnModelMissing",
    "ValidationFailedEvent",
    "ValidationPassed",
    "default_bus",
]
__all__ += [  # voice: per-turn latency marks and summary
    "FinalTranscript",
    "FirstAudioOut",
    "FirstModelToken",
    "FirstTTSAudio",
    "PreemptiveReply",
    "UserSpeechEnded",
    "VoiceTurnEvent",
    "VoiceTurnLatency",
]


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of all events; ``time`` is ``time.monotonic()`` at creation."""

    time: float = field(default_factory=time.monotonic)


@dataclass(slots=True, kw_only=True)
class StageStarted(Event):
    stage: str
    kind: str = ""


@dataclass(slots=True, kw_only=True)
class StageCompleted(Event):
    stage: str
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class StageFailed(Event):
    """A stage ended with an error: its own (``upstream`` False) or one from an earlier stage passing through."""

    stage: str
    error: str = ""
    error_type: str = ""
    duration_s: float = 0.0
    upstream: bool = False


@dataclass(slots=True, kw_only=True)
class StageDisposed(Event):
    """A stage's subscription was disposed before it completed (cancelled)."""

    stage: str
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class ProviderCallStarted(Event):
    provider: str
    model: str = ""
    call_id: str = ""


@dataclass(slots=True, kw_only=True)
class ProviderFirstToken(Event):
    provider: str
    model: str = ""
    call_id: str = ""
    ttft_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class ProviderCallCompleted(Event):
    provider: str
    model: str = ""
    call_id: str = ""
    duration_s: float = 0.0
    ttft_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: float | None = 0.0  # None: the model has no known price (see CostUnknown)
    cost_estimated: bool = False  # priced from estimated usage (the server sent none)
    conversation: str = ""


@dataclass(slots=True, kw_only=True)
class CostUnknown(Event):
    """A provider has no price for ``model``: its calls have no cost (published once per model)."""

    provider: str
    model: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One of a provider's rate limits as it last reported it: ``remaining`` of ``limit`` until ``reset_seconds``."""

    name: str  # "requests", "tokens"
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(slots=True, kw_only=True)
class RateLimitsUpdated(Event):
    """A provider reported its rate limits (OpenAI Realtime's ``rate_limits.updated``, at each response's start).

    >>> e = RateLimitsUpdated(provider="openai-realtime", limits=(RateLimit("requests", 5000, 4999, 0.01),))
    >>> e.limits[0].remaining
    4999
    """

    provider: str
    model: str = ""
    limits: tuple[RateLimit, ...] = ()


@dataclass(slots=True, kw_only=True)
class TurnModelMissing(Event):
    """The voice graph ends turns by silence alone: the end-of-turn model is not installed (``hint`` says how)."""

    hint: str = ""


@dataclass(slots=True, kw_only=True)
class ProviderCallFailed(Event):
    provider: str
    model: str = ""
    call_id: str = ""
    error: str = ""
    error_type: str = ""
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class ValidationPassed(Event):
    validator: str
    phase: str = "output"


@dataclass(slots=True, kw_only=True)
class ValidationFailedEvent(Event):
    validator: str
    phase: str = "output"
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class StructuredRetry(Event):
    """A typed function's answer did not fit its type; the errors go back to the model for attempt ``attempt``."""

    function: str
    attempt: int = 0
    errors: str = ""


@dataclass(slots=True, kw_only=True)
class StructuredResult(Event):
    """A typed function finished: ``ok`` with a valid value after ``attempts`` answers, or not."""

    function: str
    ok: bool = True
    attempts: int = 1
    mode: str = ""


@dataclass(slots=True, kw_only=True)
class PromptAssembled(Event):
    """A request was built for a turn; ``dropped`` history messages did not fit the budget."""

    prompt: str
    session: str = ""
    messages: int = 0
    dropped: int = 0


@dataclass(slots=True, kw_only=True)
class StateLoaded(Event):
    session: str
    messages: int = 0


@dataclass(slots=True, kw_only=True)
class StateSaved(Event):
    session: str
    messages: int = 0


@dataclass(slots=True, kw_only=True)
class ToolCallStarted(Event):
    tool: str
    call_id: str = ""


@dataclass(slots=True, kw_only=True)
class ToolCallPending(Event):
    """The tool needs approval; the loop waits for the application."""

    tool: str
    call_id: str = ""
    arguments: str = ""


@dataclass(slots=True, kw_only=True)
class ToolCallCompleted(Event):
    tool: str
    call_id: str = ""
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class ToolCallFailed(Event):
    tool: str
    call_id: str = ""
    error: str = ""
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class VoiceTurnEvent(Event):
    """Base of the latency marks of one voice turn (published once per turn, never per frame).

    ``turn`` numbers the user's turns from 1; ``since_speech_end_s`` is how
    long after the end of the user's speech this step happened.
    """

    turn: int
    since_speech_end_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class UserSpeechEnded(VoiceTurnEvent):
    """The turn detector decided the user stopped speaking.

    ``speech_end`` (``time.monotonic()``) is when the speech itself ended, so
    ``since_speech_end_s`` is the VAD hangover.
    """

    speech_end: float = 0.0


@dataclass(slots=True, kw_only=True)
class PreemptiveReply(Event):
    """A reply started at a pause before the turn was confirmed (preemptive generation) was used or thrown away.

    ``used``: the turn ended there with the same transcript, and the held
    reply was let out. Else ``reason`` says why it was dropped, unheard and
    unsaved: ``"speech_resumed"``, ``"transcript_changed"``, ``"discarded"``
    (the turn was too short to keep), ``"interrupted"``, ``"overflow"`` (it
    outgrew what may be held) or ``"ended"`` (the input ended first).
    ``held_s``: how long it ran before that.
    """

    text: str = ""
    used: bool = False
    reason: str = "confirmed"
    held_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class FinalTranscript(VoiceTurnEvent):
    """The final transcript of the user's turn is ready (``text``)."""

    text: str = ""


@dataclass(slots=True, kw_only=True)
class FirstModelToken(VoiceTurnEvent):
    """The first token of the model's reply came out of the text-mode graph."""


@dataclass(slots=True, kw_only=True)
class FirstTTSAudio(VoiceTurnEvent):
    """The first audio of the reply came out of speech synthesis."""


@dataclass(slots=True, kw_only=True)
class FirstAudioOut(VoiceTurnEvent):
    """The first sample of the reply left the output (the speaker's DAC, or a WAV file).

    ``device`` is True for a sound device (then ``time`` is when PortAudio
    played it), False for a file sink.
    """

    device: bool = True


@dataclass(slots=True, kw_only=True)
class VoiceTurnLatency(Event):
    """One voice turn's time from the end of the user's speech to the first audio out, split by component.

    ``total_s`` = ``audio_in_s`` (the end of speech at the microphone -> its
    frame reached the graph: the mic's block and the hand-off to the event
    loop; 0 for a file, whose end of speech is taken at its frame's arrival) +
    ``vad_hangover_s`` (-> turn detected: the end-of-turn verdict) +
    ``stt_s`` (-> final transcript) + ``model_ttft_s`` (the provider's own time
    to first token) + ``model_first_sentence_s`` (first token -> the first
    chunk for speech: the first whole sentence, or its first clause with
    ``first_clause_words``) + ``tts_first_chunk_s`` (-> first synthesized audio) +
    ``audio_out_s`` (-> first sample played: the device's buffer) +
    ``framework_s`` (what rxkit itself adds: the rest). The end of speech is
    the VAD's last voiced frame, not the verdict; ``total_s - audio_in_s -
    vad_hangover_s`` is the time from the verdict.
    """

    turn: int
    total_s: float = 0.0
    audio_in_s: float = 0.0
    vad_hangover_s: float = 0.0
    stt_s: float = 0.0
    model_ttft_s: float = 0.0
    model_first_sentence_s: float = 0.0
    tts_first_chunk_s: float = 0.0
    audio_out_s: float = 0.0
    framework_s: float = 0.0
    transcript: str = ""
    # Preemptive generation: the reply was started at a pause, before the verdict, and used (then the model's
    # parts count only what was left of them after the final transcript); and how many such replies were
    # started in this turn and thrown away (the user spoke on, or the transcript changed).
    preemptive: bool = False
    preemptive_wasted: int = 0


Listener = Callable[[Event], Any]


class _Subscription:
    __slots__ = ("listener", "backlog", "loop", "scheduled", "types", "active")

    def __init__(
        self, listener: Listener, maxlen: int, loop: asyncio.AbstractEventLoop | None, types: tuple[type, ...]
    ) -> None:
        self.listener = listener
        self.backlog: deque[Event] = deque(maxlen=maxlen)
        self.loop = loop
        self.scheduled = False
        self.types = types
        self.active = True


class EventBus:
    """A bounded publish/subscribe bus for :class:`Event` objects.

    ``history`` keeps the last ``history_size`` events for inspection (for
    example in a notebook). Listeners registered while an event loop runs
    are called on that loop; others are called on :meth:`flush` or, if no
    loop is running at publish time, right away.
    """

    def __init__(self, history_size: int = 10_000, listener_backlog: int = 10_000) -> None:
        self.history: deque[Event] = deque(maxlen=history_size)
        self._subs: list[_Subscription] = []
        self._backlog = listener_backlog
        self._lock = threading.Lock()  # guards subscribe/unsubscribe only, never publish
        self.dropped = 0

    def subscribe(self, listener: Listener, *types: type[Event]) -> Callable[[], None]:
        """Call ``listener`` for each event (of ``types`` if given); returns an unsubscribe function."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        sub = _Subscription(listener, self._backlog, loop, tuple(types) or (Event,))
        with self._lock:
            self._subs = [*self._subs, sub]

        def unsubscribe() -> None:
            sub.active = False  # a drain already scheduled delivers nothing more
            sub.backlog.clear()
            with self._lock:
                self._subs = [s for s in self._subs if s is not sub]

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Record ``event`` and hand it to listeners without waiting for them."""
        self.history.append(event)
        for sub in self._subs:
            if not isinstance(event, sub.types):
                continue
            if len(sub.backlog) == sub.backlog.maxlen:
                self.dropped += 1
            sub.backlog.append(event)
            if not sub.scheduled:
                sub.scheduled = True
                self._schedule(sub)

    def _schedule(self, sub: _Subscription) -> None:
        loop = sub.loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            try:
                if running is loop:
                    loop.call_soon(self._drain, sub)
                else:
                    loop.call_soon_threadsafe(self._drain, sub)
                return
            except RuntimeError:  # the loop closed meanwhile: deliver here rather than raise into the publisher
                pass
        self._drain(sub)

    @staticmethod
    def _drain(sub: _Subscription) -> None:
        sub.scheduled = False
        backlog = sub.backlog
        while backlog and sub.active:
            event = backlog.popleft()
            try:
                sub.listener(event)
            except Exception:  # noqa: BLE001 - a listener never breaks the bus
                pass

    def flush(self) -> None:
        """Deliver every pending event now, on this thread."""
        for sub in self._subs:
            self._drain(sub)

    def events(self, *types: type[Event]) -> list[Event]:
        """The recorded history, optionally filtered by type."""
        if not types:
            return list(self.history)
        return [e for e in self.history if isinstance(e, types)]

    def clear(self) -> None:
        self.history.clear()


default_bus = EventBus()
"""The bus used when a graph or provider is given none."""
