"""OpenAI speech: transcription (``POST /audio/transcriptions``) and speech (``POST /audio/speech``).

Both stream as Server-Sent Events: a transcription streams
``transcript.text.delta`` events and ends with ``transcript.text.done``
(models ``gpt-4o-transcribe`` and ``gpt-4o-mini-transcribe``; ``whisper-1``
answers with one JSON body instead); speech streams ``speech.audio.delta``
events of base64 PCM (24 kHz, 16-bit mono with ``response_format: "pcm"``)
and ends with ``speech.audio.done``. ``tts-1`` and ``tts-1-hd`` do not speak
SSE: they stream the raw PCM body (``stream_format: "audio"``).

The key comes from ``api_key=`` or ``OPENAI_API_KEY``; the address from
``base_url=`` or ``OPENAI_BASE_URL`` (default ``https://api.openai.com/v1``)::

    from rxkit.speech import OpenAISTT, OpenAITTS
    graph = voice_graph(provider, stt=OpenAISTT(), tts=OpenAITTS(voice="coral"))
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from rxkit.elements import Transcript
from rxkit.errors import ConfigError, ProviderError, StreamInterruptedError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech._engines import CloudRecognition, CloudSTT, CloudTTS
from rxkit.speech._service import Service, pcm16, wav_bytes
from rxkit.sse import SSEDecoder

__all__ = ["OpenAISTT", "OpenAITTS"]

DEFAULT_URL = "https://api.openai.com/v1"
_NON_STREAMING_STT = ("whisper-1",)
_NON_SSE_TTS = ("tts-1", "tts-1-hd")
MAX_SPEECH_CHARS = 4096  # the API's limit on ``input``
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # the API's limit on an uploaded file


def _service(
    name: str, api_key: str | None, base_url: str | None, options: HTTPOptions | None, client: HttpClient | None
) -> Service:
    return Service(
        name, api_key=api_key, env="OPENAI_API_KEY", base_url=base_url, default_url=DEFAULT_URL,
        options=options, client=client,
    )  # fmt: skip


class OpenAISTT(CloudSTT):
    """Speech recognition by OpenAI's transcription endpoint, streaming the text back.

    The utterance's audio is collected as it comes (16 kHz mono) and sent
    when it ends, as a WAV file; the text streams back as deltas, so the
    final :class:`~rxkit.elements.Transcript` is ready as soon as the last
    delta arrives. ``language`` (ISO-639-1) and ``prompt`` help accuracy.

    >>> stt = OpenAISTT(model="gpt-4o-mini-transcribe")          # doctest: +SKIP
    >>> await stt.atranscribe(pcm, 16000)                        # doctest: +SKIP
    'What is the weather in Paris?'
    """

    name = "openai-stt"
    sample_rate = 16_000

    def __init__(
        self,
        model: str = "gpt-4o-mini-transcribe",
        *,
        language: str | None = None,
        prompt: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: HTTPOptions | None = None,
        client: HttpClient | None = None,
    ) -> None:
        super().__init__(_service(self.name, api_key, base_url, options, client))
        self.model = model
        self.language = language
        self.prompt = prompt

    def start(self, *, partials: bool = True) -> CloudRecognition:
        return _OpenAIRecognition(self, partials)


class _OpenAIRecognition(CloudRecognition):
    def __init__(self, stt: OpenAISTT, partials: bool) -> None:
        super().__init__(stt, partials)
        self.stt = stt
        self.audio = bytearray()
        self.closed = False

    async def feed(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> Transcript | None:
        if self.closed:
            raise ConfigError("this utterance has already finished; call stt.start() for the next one")
        self.audio += pcm16(pcm, sample_rate, channels, self.sample_rate)
        return None  # the endpoint takes whole files: text comes back after finish()

    async def finish(self) -> Transcript:
        if self.closed:
            raise ConfigError("this utterance has already finished")
        self.closed = True
        if not self.audio:
            return Transcript("", final=True)
        stt, service = self.stt, self.service
        wav = wav_bytes(bytes(self.audio), self.sample_rate)
        self.audio = bytearray()
        if len(wav) > MAX_UPLOAD_BYTES:
            raise ConfigError(f"{stt.name}: {len(wav)} bytes of audio is over the API's 25 MB limit per request")
        stream = stt.model not in _NON_STREAMING_STT
        form = aiohttp.FormData()
        # a file object, not bytes: aiohttp warns (ResourceWarning) on a bytes body over 1 MiB, about 32 s of speech
        form.add_field("file", io.BytesIO(wav), filename="speech.wav", content_type="audio/wav")
        form.add_field("model", stt.model)
        form.add_field("response_format", "json")
        if stream:
            form.add_field("stream", "true")
        if stt.language:
            form.add_field("language", stt.language)
        if stt.prompt:
            form.add_field("prompt", stt.prompt)
        url = service.base_url + "/audio/transcriptions"
        headers = {"authorization": f"Bearer {service.key()}"}
        try:
            async with service.client.session().post(url, data=form, headers=headers) as response:
                await service.check(response)
                if not stream or not response.content_type.startswith("text/event-stream"):
                    data = orjson.loads(await response.read())
                    return Transcript(str(data.get("text", "")).strip(), final=True)
                return Transcript(await self._read_stream(response), final=True)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise StreamInterruptedError(
                f"{stt.name}: the connection failed: {type(exc).__name__}", provider=stt.name
            ) from None

    async def _read_stream(self, response: aiohttp.ClientResponse) -> str:
        decoder = SSEDecoder()
        text: list[str] = []
        try:
            async for chunk in response.content.iter_any():
                for event in decoder.feed(chunk):
                    data = orjson.loads(event.data)
                    kind = data.get("type")
                    if kind == "transcript.text.delta":
                        text.append(data.get("delta", ""))
                    elif kind == "transcript.text.done":
                        return str(data.get("text", "".join(text))).strip()
                    elif kind == "error" or data.get("error") is not None:
                        raise self.service.message_error(_error_body(data))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            pass  # the connection dropped mid-stream: below, with the text so far
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProviderError(
                f"{self.stt.name}: a malformed event: {type(exc).__name__}", provider=self.stt.name
            ) from None
        raise StreamInterruptedError(
            f"{self.stt.name}: the stream ended before transcript.text.done", provider=self.stt.name,
            partial="".join(text),
        )  # fmt: skip

    def close(self) -> None:
        self.closed = True
        self.audio = bytearray()


class OpenAITTS(CloudTTS):
    """Speech by OpenAI's speech endpoint, streamed: audio plays while the rest is still produced.

    ``voice`` is a built-in voice (``alloy``, ``coral``, ``marin``...);
    ``instructions`` steer the delivery (not with ``tts-1``). Audio is 24 kHz
    16-bit mono PCM.

    >>> tts = OpenAITTS(voice="coral")                           # doctest: +SKIP
    >>> async for pcm in tts.astream("Hello there."): play(pcm)  # doctest: +SKIP
    """

    name = "openai-tts"
    sample_rate = 24_000

    def __init__(
        self,
        model: str = "gpt-4o-mini-tts",
        *,
        voice: str = "alloy",
        instructions: str | None = None,
        speed: float | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: HTTPOptions | None = None,
        client: HttpClient | None = None,
    ) -> None:
        if speed is not None and not 0.25 <= speed <= 4.0:
            raise ConfigError(f"{self.name}: speed must be 0.25..4.0, not {speed}")
        super().__init__(_service(self.name, api_key, base_url, options, client))
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.speed = speed

    async def _stream(self, text: str) -> AsyncIterator[bytes]:
        if len(text) > MAX_SPEECH_CHARS:
            raise ConfigError(f"{self.name}: {len(text)} characters is over the API's {MAX_SPEECH_CHARS} per request")
        service = self.service
        sse = self.model not in _NON_SSE_TTS
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
            "stream_format": "sse" if sse else "audio",
        }
        if self.instructions:
            body["instructions"] = self.instructions
        if self.speed is not None:
            body["speed"] = self.speed
        headers = {"authorization": f"Bearer {service.key()}", "content-type": "application/json"}
        url = service.base_url + "/audio/speech"
        done = False
        try:
            async with service.client.session().post(url, data=orjson.dumps(body), headers=headers) as response:
                await service.check(response)
                if not response.content_type.startswith("text/event-stream"):
                    async for chunk in response.content.iter_any():
                        yield chunk
                    return
                decoder = SSEDecoder()
                async for raw in response.content.iter_any():
                    for event in decoder.feed(raw):
                        data = orjson.loads(event.data)
                        kind = data.get("type")
                        if kind == "speech.audio.delta":
                            yield base64.b64decode(data.get("audio", ""))
                        elif kind == "speech.audio.done":
                            done = True
                        elif kind == "error" or data.get("error") is not None:
                            raise service.message_error(_error_body(data))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise StreamInterruptedError(
                f"{self.name}: the connection failed: {type(exc).__name__}", provider=self.name
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProviderError(f"{self.name}: a malformed event: {type(exc).__name__}", provider=self.name) from None
        if not done:
            raise StreamInterruptedError(f"{self.name}: the stream ended before speech.audio.done", provider=self.name)


def _error_body(data: dict[str, Any]) -> dict[str, Any]:
    """The part of an error event that says what went wrong: its ``error`` object, or the event itself
    (an ``"error": "text"`` or an event of type ``error`` without one)."""
    error = data.get("error")
    return error if isinstance(error, dict) else data
