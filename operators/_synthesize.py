"""synthesize: sentences in, speech out as :class:`~rxkit.elements.AudioFrame` chunks.

Each :class:`~rxkit.elements.TextDelta` (put :func:`sentence_chunker` before
this stage, so that each one is a whole sentence) is synthesized on the TTS
engine's worker thread, one at a time and in order, and goes out as frames of
``chunk_ms`` of 16-bit mono PCM. An :class:`~rxkit.elements.Interrupt` goes
out at once and drops the queued sentences and the audio of the one being
synthesized; disposal does the same.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.audio.tts import TTS
from rxkit.elements import AudioFrame, Interrupt, TextDelta
from rxkit.errors import AudioError, BufferOverflowError, ConfigError, RxkitError
from rxkit.graph.stage import Stage, StageKind
from rxkit.scheduling import QueuedWorker, loop_of

__all__ = ["synthesize"]


def synthesize(tts: TTS, *, chunk_ms: int = 100, keep_text: bool = False, max_pending: int = 64) -> Stage[Any, Any]:
    """Speak each sentence with ``tts``: ``AudioFrame`` chunks of ``chunk_ms`` per sentence.

    ``keep_text=True`` also emits each sentence element just before its
    audio (for a transcript display). Other elements pass through in order.
    Frame timestamps count seconds of speech produced since subscription.
    More than ``max_pending`` sentences waiting is a
    :class:`~rxkit.errors.BufferOverflowError` (a model outruns TTS by far
    less than that).

    >>> reply.pipe(sentence_chunker(), synthesize(Pyttsx3TTS()), speaker())  # doctest: +SKIP
    """
    if chunk_ms < 5 or max_pending < 1:
        raise ConfigError("synthesize needs chunk_ms >= 5 and max_pending >= 1")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            run = _Run(observer, loop_of(scheduler), tts, chunk_ms, keep_text, max_pending)
            sub = source.subscribe(run.on_next, run.fail, run.on_completed, scheduler=scheduler)

            def dispose() -> None:
                sub.dispose()
                run.cancel()

            return dispose

        return reactivex.create(subscribe)

    return Stage("synthesize", operator, StageKind.TRANSFORM, "sentences -> speech audio")


class _Run(QueuedWorker):
    def __init__(
        self,
        observer: abc.ObserverBase[Any],
        loop: asyncio.AbstractEventLoop,
        tts: TTS,
        chunk_ms: int,
        keep_text: bool,
        max_pending: int,
    ) -> None:
        # bounded in on_next: max_pending sentences and 2 * max_pending other elements
        super().__init__(observer, loop, maxlen=3 * max_pending + 1)
        self.tts = tts
        self.chunk_ms = chunk_ms
        self.keep_text = keep_text
        self.max_pending = max_pending
        self.sentences = 0
        self.generation = 0  # bumped by Interrupt: audio of an older generation is dropped
        self.position = 0.0
        self.speaking: asyncio.Task[None] | None = None  # the sentence being spoken
        self.start()

    def on_next(self, x: Any) -> None:
        if self.stopped:
            return
        if isinstance(x, Interrupt):
            self.generation += 1
            if self.speaking is not None:
                self.speaking.cancel()
            self.items = deque((i for i in self.items if not isinstance(i, TextDelta)), maxlen=self.items.maxlen)
            self.sentences = 0
            self.observer.on_next(x)
            return
        if isinstance(x, TextDelta):
            if self.sentences >= self.max_pending:
                self.fail(BufferOverflowError(f"synthesize: more than {self.max_pending} sentences waiting"))
                return
            self.sentences += 1
        elif len(self.items) >= 2 * self.max_pending:
            self.fail(BufferOverflowError(f"synthesize: more than {2 * self.max_pending} elements waiting"))
            return
        self.items.append(x)
        self.wake.set()

    async def pump(self) -> None:
        try:
            while True:
                if not self.items:
                    if self.completed:
                        self.stopped = True
                        self.observer.on_completed()
                        return
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                x = self.items.popleft()
                if isinstance(x, TextDelta):
                    self.sentences -= 1
                    # its own task, so that an Interrupt stops a sentence still streaming in (and closes its request)
                    speaking = self.speaking = self.loop.create_task(self.speak(x))
                    try:
                        await asyncio.wait([speaking])
                    finally:
                        self.speaking = None
                        speaking.cancel()  # the pump itself was cancelled: take the sentence with it
                    if not speaking.cancelled():
                        speaking.result()  # an engine's error
                else:
                    self.emit(x)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes on_error
            if not self.stopped:
                self.stopped = True
                self.observer.on_error(exc if isinstance(exc, RxkitError) else AudioError(f"synthesize failed: {exc}"))

    async def speak(self, sentence: TextDelta) -> None:
        generation = self.generation
        rate = self.tts.sample_rate
        step = 2 * (rate * self.chunk_ms // 1000)  # whole samples
        pending = b""  # audio not yet a whole frame (a streaming engine's chunks have any size)
        started = False
        stream = self.tts.astream(sentence.text)
        try:
            async for pcm in stream:
                if generation != self.generation or self.stopped:
                    return  # interrupted while it was being synthesized
                if not started:
                    started = True
                    if self.keep_text:
                        self.emit(sentence)
                pending = pending + pcm if pending else pcm
                whole = len(pending) - len(pending) % step
                for i in range(0, whole, step):
                    self.frame(pending[i : i + step], rate)
                pending = pending[whole:]
        finally:
            await stream.aclose()  # an abandoned stream closes its connection now
        if generation != self.generation or self.stopped:
            return
        if not started and self.keep_text:
            self.emit(sentence)
        if pending:
            self.frame(pending[: len(pending) - len(pending) % 2], rate)

    def frame(self, chunk: bytes, rate: int) -> None:
        if chunk:
            self.emit(AudioFrame(chunk, rate, 1, self.position))
            self.position += len(chunk) / (2 * rate)
