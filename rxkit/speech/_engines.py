"""The shape every cloud engine takes: an STT or TTS of :mod:`rxkit.audio` with no worker thread.

Local engines decode on a worker thread; a cloud engine awaits the network
on the event loop instead, so these bases replace the worker-thread parts
of :class:`~rxkit.audio.stt.STT` and :class:`~rxkit.audio.tts.TTS` and keep
their public methods, so that :func:`~rxkit.operators.transcribe`,
:func:`~rxkit.operators.synthesize` and the voice graph take either kind.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any, TypeVar

from rxkit.audio.stt import STT, Recognition
from rxkit.audio.tts import TTS, speakable
from rxkit.elements import Transcript
from rxkit.errors import ConfigError
from rxkit.speech._service import Service

__all__ = ["CloudRecognition", "CloudSTT", "CloudTTS"]

T = TypeVar("T")


def _blocking(coro: Coroutine[Any, Any, T], what: str) -> T:
    """Run ``coro`` to the end for a blocking call; refused inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise ConfigError(f"{what} blocks: inside an event loop, await its async twin instead")


class CloudRecognition(Recognition):
    """One utterance sent to a service: :meth:`feed` audio, then :meth:`finish`; :meth:`close` abandons it."""

    def __init__(self, stt: CloudSTT, partials: bool) -> None:
        super().__init__(stt, partials)
        self.service = stt.service
        self.sample_rate = stt.sample_rate

    @abstractmethod
    async def feed(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> Transcript | None: ...

    @abstractmethod
    async def finish(self) -> Transcript: ...

    @abstractmethod
    def close(self) -> None: ...


class CloudSTT(STT):
    """Base of speech recognisers that are network services (no model, no worker thread)."""

    def __init__(self, service: Service) -> None:  # no super().__init__(): no worker thread to start
        self.service = service

    def _open(self) -> Any:  # pragma: no cover - cloud engines recognise through their Recognition
        raise NotImplementedError

    @abstractmethod
    def start(self, *, partials: bool = True) -> CloudRecognition:
        """Begin recognising one utterance (the connection opens with the first audio)."""

    async def atranscribe(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> str:
        rec = self.start(partials=False)
        try:
            await rec.feed(pcm, sample_rate, channels)
            return (await rec.finish()).text
        finally:
            rec.close()

    def transcribe(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> str:
        return _blocking(self.atranscribe(pcm, sample_rate, channels), f"{type(self).__name__}.transcribe")

    def close(self) -> None:
        """Nothing to stop: each utterance's connection closes with it. Idempotent."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.service.shown(self.service.base_url)!r})"


class CloudTTS(TTS):
    """Base of speech synthesizers that are network services: :meth:`astream` yields audio as it arrives."""

    def __init__(self, service: Service) -> None:  # no super().__init__(): no worker thread to start
        self.service = service

    def _synthesize(self, text: str) -> bytes:  # pragma: no cover - cloud engines synthesize on the loop
        raise NotImplementedError

    @abstractmethod
    def _stream(self, text: str) -> AsyncIterator[bytes]:
        """Yield PCM chunks of ``text`` (whole samples) as the service sends them."""

    async def astream(self, text: str) -> AsyncGenerator[bytes, None]:
        if not speakable(text):
            return
        carry = b""  # a service may split a sample across messages: hold the odd byte
        async for chunk in self._stream(text):
            if carry:
                chunk = carry + chunk
                carry = b""
            if len(chunk) % 2:
                chunk, carry = chunk[:-1], chunk[-1:]
            if chunk:
                yield chunk

    async def asynthesize(self, text: str) -> bytes:
        return b"".join([chunk async for chunk in self.astream(text)])

    def synthesize(self, text: str) -> bytes:
        return _blocking(self.asynthesize(text), f"{type(self).__name__}.synthesize")

    def close(self) -> None:
        """Nothing to stop: each sentence's request closes with it. Idempotent."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.service.shown(self.service.base_url)!r})"
