"""Deepgram streaming speech recognition over a WebSocket (``GET /v1/listen``).

The client sends the utterance as binary frames of 16-bit mono PCM
(``encoding=linear16``, ``sample_rate=16000``) while the user speaks, and
reads ``Results`` messages: interim ones (``is_final: false``) become partial
transcripts, final ones are kept in order. At the end of the utterance it
sends ``{"type": "CloseStream"}``: the server transcribes what is left,
sends its last results and a ``Metadata`` message, and closes the socket
(code 1000). A refused handshake (bad key: HTTP 401 with a ``dg-error``
header) and a close with an error code (1008 bad data, 1011 server error)
become typed errors. Nothing else waits on the socket, so a turn's final
text is ready as soon as the server's last result arrives.

The key comes from ``api_key=`` or ``DEEPGRAM_API_KEY``::

    from rxkit.speech import DeepgramSTT
    graph = voice_graph(provider, stt=DeepgramSTT(model="nova-3", language="en"))
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlencode

import aiohttp

from rxkit.elements import Transcript
from rxkit.errors import ConfigError, ProviderError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech._engines import CloudRecognition, CloudSTT
from rxkit.speech._service import Service, pcm16

__all__ = ["DeepgramSTT"]

DEFAULT_URL = "https://api.deepgram.com"


class DeepgramSTT(CloudSTT):
    """Streaming recognition by Deepgram: partial transcripts while the user speaks.

    ``model`` (``nova-3``), ``language`` (``en``, ``multi``...), and any other
    query parameter of the listen API in ``params`` (``keyterm``,
    ``smart_format``...). One WebSocket per utterance, opened by its first
    audio and closed at its end.

    >>> stt = DeepgramSTT(language="en")                        # doctest: +SKIP
    >>> rec = stt.start()                                       # doctest: +SKIP
    >>> await rec.feed(pcm, 16000)                              # doctest: +SKIP
    Transcript(text='what is the', final=False)
    >>> await rec.finish()                                      # doctest: +SKIP
    Transcript(text='What is the weather in Paris?', final=True)
    """

    name = "deepgram"
    sample_rate = 16_000

    def __init__(
        self,
        model: str = "nova-3",
        *,
        language: str | None = "en",
        punctuate: bool = True,
        params: dict[str, Any] | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: HTTPOptions | None = None,
        client: HttpClient | None = None,
    ) -> None:
        super().__init__(
            Service(
                self.name, api_key=api_key, env="DEEPGRAM_API_KEY", base_url=base_url, default_url=DEFAULT_URL,
                options=options, client=client,
            )
        )  # fmt: skip
        self.model = model
        self.language = language
        self.punctuate = punctuate
        self.params = dict(params or {})

    def url(self, partials: bool) -> str:
        query: dict[str, Any] = {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": self.sample_rate,
            "channels": 1,
            "interim_results": "true" if partials else "false",
            "punctuate": "true" if self.punctuate else "false",
        }
        if self.language:
            query["language"] = self.language
        query.update({k: ("true" if v is True else "false" if v is False else v) for k, v in self.params.items()})
        return self.service.ws_url("/v1/listen") + "?" + urlencode(query, doseq=True)

    def start(self, *, partials: bool = True) -> CloudRecognition:
        return _DeepgramRecognition(self, partials)


class _DeepgramRecognition(CloudRecognition):
    def __init__(self, stt: DeepgramSTT, partials: bool) -> None:
        super().__init__(stt, partials)
        self.stt = stt
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.finals: list[str] = []  # final segments, in order
        self.interim = ""
        self.shown = ""  # the last partial handed out
        self.error: BaseException | None = None
        self.closed = False
        self.closing: asyncio.Task[Any] | None = None  # the socket's close, when the reader never ran

    async def feed(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> Transcript | None:
        if self.closed:
            raise ConfigError("this utterance has already finished; call stt.start() for the next one")
        if self.error is not None:
            raise self.error
        audio = pcm16(pcm, sample_rate, channels, self.sample_rate)
        if self.ws is None:
            await self._open()
        assert self.ws is not None
        try:
            await self.ws.send_bytes(audio)
        except (ConnectionError, aiohttp.ClientConnectionError):
            await self._settle()
            raise self.error or self.service.closed_error(self.ws, "the utterance ended") from None
        if not self._partials:
            return None
        text = self._text()
        if text == self.shown:
            return None
        self.shown = text
        return Transcript(text, final=False)

    async def finish(self) -> Transcript:
        if self.closed:
            raise ConfigError("this utterance has already finished")
        self.closed = True
        if self.ws is None:
            return Transcript("", final=True)  # no audio came: nothing to ask the server
        try:
            if self.error is None and not self.ws.closed:
                with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionError):
                    await self.ws.send_str('{"type": "CloseStream"}')
            await self._settle()
        finally:
            await self._shut()
        if self.error is not None:
            raise self.error
        return Transcript(" ".join(s for s in self.finals if s), final=True)

    def close(self) -> None:
        """Abandon the utterance: stop reading and close the socket (no result)."""
        self.closed = True
        if self.reader is not None:
            self.reader.cancel()  # a no-op once it ended; its finally (or _reader_done) closes the socket

    # -- internals ------------------------------------------------------------------
    def _text(self) -> str:
        return " ".join(s for s in (*self.finals, self.interim) if s)

    async def _open(self) -> None:
        service = self.service
        self.ws = await service.ws_connect(self.stt.url(self._partials), {"authorization": f"Token {service.key()}"})
        self.reader = asyncio.get_running_loop().create_task(self._read(self.ws), name="rxkit-deepgram-reader")
        self.reader.add_done_callback(self._reader_done)

    def _reader_done(self, reader: asyncio.Task[None]) -> None:
        # A reader cancelled before its first step never reaches its finally (close() right after the
        # first feed): the socket would stay open. Close it here; ws.closed is set as soon as a close begins.
        if self.ws is not None and not self.ws.closed:
            self.closing = asyncio.get_running_loop().create_task(self.ws.close())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                data = await self.service.receive(ws, "the last result")
                if data is None:
                    return  # closed normally (after CloseStream)
                if not isinstance(data, dict):
                    continue
                kind = data.get("type")
                if kind == "Results":
                    alternatives = (data.get("channel") or {}).get("alternatives") or [{}]
                    text = str(alternatives[0].get("transcript", "")).strip()
                    if data.get("is_final"):
                        if text:
                            self.finals.append(text)
                        self.interim = ""
                    else:
                        self.interim = text
                elif kind == "Error" or ("err_code" in data or "err_msg" in data):
                    raise self.service.message_error(data)
                # Metadata, SpeechStarted, UtteranceEnd: nothing to do
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - a malformed message ends the utterance with a typed error
            self.error = ProviderError(
                f"{self.stt.name}: a malformed message: {type(exc).__name__}", provider=self.stt.name
            )
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _settle(self) -> None:
        """Wait for the reader to end: the server closes after CloseStream (each wait is bounded by idle_timeout)."""
        if self.reader is not None:
            await asyncio.wait([self.reader])

    async def _shut(self) -> None:
        """Stop a reader still waiting (finish was cancelled); its finally closes the socket."""
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
