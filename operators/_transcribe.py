"""transcribe: the user's audio in, :class:`~rxkit.audio.stt.Transcript` elements out.

Two ways in, picked by what arrives:

* whole turns: an :class:`~rxkit.elements.Utterance` (or ``bytes`` of PCM
  at ``sample_rate``) is recognised in one go, giving one final transcript;
* streaming: :class:`~rxkit.elements.AudioFrame` s are recognised while they
  arrive, so the final transcript is ready right after the user stops. With
  turn markers, a turn runs from :class:`SpeechStarted` (plus ``preroll_ms``
  of the audio before it) to :class:`SpeechStopped`, and the
  :class:`Utterance` that repeats that turn is then skipped; without markers,
  frames run until :class:`EndOfTurn`, :class:`EndOfStream` or completion.

A :class:`~rxkit.elements.TentativeEnd` in a turn (preemptive generation)
finishes the recognition there: it goes on carrying the transcript so far,
and if the turn then ends (:class:`SpeechStopped`) that is its final
transcript, at once. If a :class:`~rxkit.elements.SpeechResumed` comes
first, the whole turn's audio so far is recognised again in a new
recognition that goes on with the rest, so the final transcript is of the
whole turn, as without the tentative end.

Recognition runs on the engine's worker thread, one chunk (``chunk_ms``) at a
time; nothing blocks the event loop and elements keep their order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.audio.stt import STT, Recognition
from rxkit.elements import (
    AudioFrame,
    EndOfStream,
    EndOfTurn,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TentativeEnd,
    Transcript,
    Utterance,
    is_urgent,
)
from rxkit.errors import AudioError, BufferOverflowError, ConfigError, RxkitError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import QueuedWorker, loop_of

__all__ = ["transcribe"]

_MAX_ITEMS = 1_024  # queued non-audio elements; audio is bounded by max_pending_s


def transcribe(
    stt: STT,
    *,
    partials: bool = False,
    sample_rate: int = 16_000,
    drop_empty: bool = True,
    preroll_ms: int = 300,
    chunk_ms: int = 100,
    max_pending_s: float = 30.0,
) -> Stage[Any, Any]:
    """Recognise speech with ``stt``; emits ``Transcript(text, final=True)`` per turn.

    ``partials=True`` also emits ``Transcript(text, final=False)`` while
    streamed audio arrives. Empty finals (noise, a cough) are dropped unless
    ``drop_empty=False``. Control elements and other elements pass through in
    order (an :class:`~rxkit.elements.Interrupt` at once); audio is consumed.
    More than ``max_pending_s`` of audio waiting for the recogniser is a
    :class:`~rxkit.errors.BufferOverflowError`.

    >>> stage = transcribe(PocketSphinxSTT(), partials=True)  # doctest: +SKIP
    >>> mic.pipe(vad_turns(), stage)                           # doctest: +SKIP
    """
    if chunk_ms < 10 or preroll_ms < 0 or max_pending_s <= 0:
        raise ConfigError("transcribe needs chunk_ms >= 10, preroll_ms >= 0 and max_pending_s > 0")
    opts = (stt, partials, sample_rate, drop_empty, preroll_ms / 1000, chunk_ms / 1000, max_pending_s)

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            run = _Run(observer, loop_of(scheduler), *opts)
            sub = source.subscribe(run.on_next, run.on_error, run.on_completed, scheduler=scheduler)

            def dispose() -> None:
                sub.dispose()
                run.cancel()

            return dispose

        return reactivex.create(subscribe)

    return Stage("transcribe", operator, StageKind.ACCUMULATE, "speech audio -> transcripts")


class _Audio:
    """Consecutive frames of one format, merged so the worker gets one call per chunk."""

    __slots__ = ("data", "rate", "channels", "timestamp")

    def __init__(self, frame: AudioFrame, pcm: bytes) -> None:
        self.data = bytearray(pcm)
        self.rate = frame.sample_rate
        self.channels = frame.channels
        self.timestamp = frame.timestamp

    def seconds(self) -> float:
        return len(self.data) / (2 * self.rate * self.channels)


class _Run(QueuedWorker):
    def __init__(
        self,
        observer: abc.ObserverBase[Any],
        loop: asyncio.AbstractEventLoop,
        stt: STT,
        partials: bool,
        sample_rate: int,
        drop_empty: bool,
        preroll: float,
        chunk: float,
        max_pending: float,
    ) -> None:
        # bounded in on_next: _MAX_ITEMS other elements, max_pending seconds of audio in at most as many batches
        super().__init__(observer, loop, maxlen=2 * _MAX_ITEMS)
        self.stt = stt
        self.partials = partials
        self.sample_rate = sample_rate
        self.drop_empty = drop_empty
        self.preroll = preroll
        self.chunk = chunk
        self.max_pending = max_pending
        self.pending_s = 0.0
        # Owned by the pump task only:
        self.rec: Recognition | None = None
        self.markers = False  # a SpeechStarted was seen: frames outside a turn are only pre-roll
        self.in_turn = False
        self.skip_utterance = False
        # The turn's audio so far, pre-roll first (bounded by the turn detector's max_turn_s), recognised again
        # if the user speaks on after a tentative end; and that end's transcript, while it holds.
        self.turn_audio: list[tuple[bytes, int, int]] = []
        self.tentative: str | None = None
        self.ring: deque[_Audio] = deque(maxlen=64)  # recent audio outside a turn, for pre-roll
        self.start()

    # -- upstream callbacks (event-loop thread) -----------------------------
    def on_next(self, x: Any) -> None:
        if self.stopped:
            return
        if isinstance(x, AudioFrame):
            pcm = x.pcm if type(x.pcm) is bytes else _as_bytes(x.pcm)
            tail = self.items[-1] if self.items else None
            if type(tail) is _Audio and tail.rate == x.sample_rate and tail.channels == x.channels:
                tail.data += pcm
            else:
                if len(self.items) >= _MAX_ITEMS * 2 - 1:  # audio changing format at every frame
                    self.fail(BufferOverflowError(f"transcribe: more than {_MAX_ITEMS} audio batches waiting"))
                    return
                tail = _Audio(x, pcm)
                self.items.append(tail)
            self.pending_s += len(pcm) / (2 * x.sample_rate * x.channels)
            if self.pending_s > self.max_pending:
                self.fail(BufferOverflowError(f"transcribe: more than {self.max_pending} s of audio waiting"))
            elif tail.seconds() >= self.chunk or len(self.items) > 1:
                self.wake.set()
        elif is_urgent(x):
            self.observer.on_next(x)  # an Interrupt passes ahead of queued audio
        else:
            if len(self.items) >= _MAX_ITEMS:
                self.fail(BufferOverflowError(f"transcribe: more than {_MAX_ITEMS} elements waiting"))
                return
            self.items.append(x)
            self.wake.set()

    # -- the pump (event-loop task) ----------------------------------------
    async def pump(self) -> None:
        try:
            while True:
                if not self.items:
                    if self.completed:
                        await self.finish()
                        self.stopped = True
                        self.observer.on_completed()
                        return
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                head = self.items[0]
                if type(head) is _Audio:
                    if len(self.items) == 1 and not self.completed and head.seconds() < self.chunk:
                        self.wake.clear()
                        await self.wake.wait()
                        continue
                    self.items.popleft()
                    self.pending_s -= head.seconds()
                    await self.audio(head)
                else:
                    self.items.popleft()
                    await self.element(head)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes on_error
            if not self.stopped:
                self.stopped = True
                self.observer.on_error(exc if isinstance(exc, RxkitError) else AudioError(f"transcribe failed: {exc}"))
        finally:
            if self.rec is not None:
                self.rec.close()
                self.rec = None

    async def audio(self, batch: _Audio) -> None:
        if self.in_turn:
            pcm = bytes(batch.data)
            self.turn_audio.append((pcm, batch.rate, batch.channels))
            if self.tentative is None:  # else held: the pause after a tentative end, recognised if speech resumes
                await self.feed(pcm, batch.rate, batch.channels)
            return
        if not self.markers:  # no turn markers (yet): all audio is one utterance
            await self.feed(bytes(batch.data), batch.rate, batch.channels)
        self.ring.append(batch)
        # keep about a second: enough for the turn detector's start window plus the pre-roll
        while len(self.ring) > 1 and sum(b.seconds() for b in self.ring) - self.ring[0].seconds() > 1.0:
            self.ring.popleft()

    async def feed(self, pcm: bytes, rate: int, channels: int, quiet: bool = False) -> None:
        if self.rec is None:
            self.rec = self.stt.start(partials=self.partials)
        partial = await self.rec.feed(pcm, rate, channels)
        if partial is not None and partial.text and not quiet:
            self.emit(partial)

    async def finish(self) -> bool:
        """Close the open recognition, emitting its final transcript; False when none was open."""
        rec, self.rec = self.rec, None
        tentative, self.tentative = self.tentative, None
        if rec is None:
            if tentative is None:
                return False
            self.emit_final(tentative)  # the turn ended at its tentative end: that transcript is final
            return True
        final = await rec.finish()
        self.emit_final(final.text)
        return True

    def emit_final(self, text: str) -> None:
        if text or not self.drop_empty:
            self.emit(Transcript(text, final=True))

    async def element(self, x: Any) -> None:
        if isinstance(x, SpeechStarted):
            self.emit(x)
            if not self.markers and self.rec is not None:
                self.rec.close()  # audio before the first marker was not a turn: drop it, keep its pre-roll
                self.rec = None
            await self.finish()  # a turn that never stopped
            self.markers = self.in_turn = True
            self.skip_utterance = False
            self.turn_audio = self.take_preroll(x.timestamp)
            for batch in self.turn_audio:
                await self.feed(batch[0], batch[1], batch[2])
        elif isinstance(x, SpeechStopped):
            self.emit(x)
            self.in_turn = False
            self.turn_audio = []
            if x.discarded:
                self.tentative = None
                if self.rec is not None:
                    self.rec.close()
                    self.rec = None
            elif await self.finish():
                self.skip_utterance = True  # the Utterance that follows repeats this turn
        elif isinstance(x, TentativeEnd):
            if self.in_turn and self.tentative is None:
                rec, self.rec = self.rec, None
                self.tentative = (await rec.finish()).text if rec is not None else ""
                x = TentativeEnd(x.timestamp, self.tentative)
            self.emit(x)
        elif isinstance(x, SpeechResumed):
            self.emit(x)
            if self.tentative is not None:  # the turn goes on: recognise all of it, then the rest as it comes
                self.tentative = None
                for pcm, rate, channels in self.turn_audio:  # quietly: its partials were shown already
                    await self.feed(pcm, rate, channels, quiet=True)
        elif isinstance(x, Utterance):
            if self.skip_utterance:
                self.skip_utterance = False
                return
            await self.finish()
            self.emit_final(await self.stt.atranscribe(x.pcm, x.sample_rate, x.channels))
        elif isinstance(x, (bytes, bytearray, memoryview)):
            await self.finish()
            self.emit_final(await self.stt.atranscribe(bytes(x), self.sample_rate))
        elif isinstance(x, (EndOfTurn, EndOfStream)):
            await self.finish()
            self.in_turn = False
            self.emit(x)
        else:
            self.emit(x)

    def take_preroll(self, start: float) -> list[tuple[bytes, int, int]]:
        """The ring's audio from ``preroll`` seconds before ``start`` (the first speech frame's time)."""
        out = []
        for b in self.ring:
            end = b.timestamp + b.seconds()
            if end <= start - self.preroll:
                continue
            skip = max(0.0, start - self.preroll - b.timestamp)
            frame_bytes = 2 * b.channels
            cut = int(skip * b.rate) * frame_bytes
            out.append((bytes(b.data[cut:]), b.rate, b.channels))
        self.ring.clear()
        return out


def _as_bytes(pcm: Any) -> bytes:
    if isinstance(pcm, (bytearray, memoryview)):
        return bytes(pcm)
    from rxkit.audio.convert import as_bytes

    return as_bytes(pcm)
