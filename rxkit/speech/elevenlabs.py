"""ElevenLabs streaming speech over a WebSocket (``GET /v1/text-to-speech/{voice_id}/stream-input``).

Per sentence: the client opens the socket (``model_id`` and
``output_format=pcm_<rate>`` in the query, the key in the ``xi-api-key``
header), sends the opening message ``{"text": " ", ...settings}``, the
sentence with ``"flush": true``, and the closing message ``{"text": ""}``.
The server answers with messages ``{"audio": "<base64 PCM>", "isFinal":
null, "normalizedAlignment": ...}`` as it speaks, then ``{"isFinal": true}``,
and closes (code 1000). An error arrives as a message with ``message`` /
``error`` fields, or as a close with an error code; both become typed errors.

The key comes from ``api_key=`` or ``ELEVENLABS_API_KEY``::

    from rxkit.speech import ElevenLabsTTS
    graph = voice_graph(provider, tts=ElevenLabsTTS(voice_id="21m00Tcm4TlvDq8ikWAM"))
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from rxkit.errors import ConfigError, ProviderError
from rxkit.providers.http import HttpClient, HTTPOptions
from rxkit.speech._engines import CloudTTS
from rxkit.speech._service import Service

__all__ = ["ElevenLabsTTS"]

DEFAULT_URL = "https://api.elevenlabs.io"
PCM_RATES = (8_000, 16_000, 22_050, 24_000, 44_100, 48_000)


class ElevenLabsTTS(CloudTTS):
    """Speech by ElevenLabs' input-streaming WebSocket; audio plays while the rest is still produced.

    ``voice_id`` is a voice of your account or library (the default is the
    premade "Rachel"), ``model_id`` a model (``eleven_flash_v2_5`` answers
    fastest), ``sample_rate`` one of the PCM rates the API offers.
    ``voice_settings`` (``stability``, ``similarity_boost``, ``speed``...) go
    in the opening message as they are.

    >>> tts = ElevenLabsTTS(model_id="eleven_flash_v2_5")       # doctest: +SKIP
    >>> async for pcm in tts.astream("Hello there."): play(pcm)  # doctest: +SKIP
    """

    name = "elevenlabs"

    def __init__(
        self,
        voice_id: str = "21m00Tcm4TlvDq8ikWAM",
        *,
        model_id: str = "eleven_flash_v2_5",
        sample_rate: int = 24_000,
        voice_settings: dict[str, Any] | None = None,
        language_code: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: HTTPOptions | None = None,
        client: HttpClient | None = None,
    ) -> None:
        if sample_rate not in PCM_RATES:
            raise ConfigError(
                f"{self.name}: sample_rate must be one of {', '.join(map(str, PCM_RATES))}, not {sample_rate}"
            )
        if not voice_id:
            raise ConfigError(f"{self.name}: voice_id is empty")
        super().__init__(
            Service(
                self.name, api_key=api_key, env="ELEVENLABS_API_KEY", base_url=base_url, default_url=DEFAULT_URL,
                options=options, client=client,
            )
        )  # fmt: skip
        self.voice_id = voice_id
        self.model_id = model_id
        self.sample_rate = sample_rate
        self.voice_settings = dict(voice_settings or {})
        self.language_code = language_code

    def url(self) -> str:
        query = {"model_id": self.model_id, "output_format": f"pcm_{self.sample_rate}"}
        if self.language_code:
            query["language_code"] = self.language_code
        path = f"/v1/text-to-speech/{quote(self.voice_id, safe='')}/stream-input"
        return self.service.ws_url(path) + "?" + urlencode(query)

    async def _stream(self, text: str) -> AsyncIterator[bytes]:
        service = self.service
        ws = await service.ws_connect(self.url(), {"xi-api-key": service.key()})
        try:
            opening: dict[str, Any] = {"text": " "}
            if self.voice_settings:
                opening["voice_settings"] = self.voice_settings
            try:
                await ws.send_str(orjson.dumps(opening).decode())
                await ws.send_str(orjson.dumps({"text": text.strip() + " ", "flush": True}).decode())
                await ws.send_str('{"text": ""}')
            except (ConnectionError, aiohttp.ClientConnectionError):
                raise service.closed_error(ws, "the sentence was sent") from None
            while True:
                data = await service.receive(ws, "the sentence's audio")
                if data is None:
                    raise service.closed_error(ws, "the final message")  # closed with 1000 but no isFinal
                if not isinstance(data, dict):
                    continue
                audio = data.get("audio")
                if audio:
                    try:
                        pcm = base64.b64decode(audio, validate=True)
                    except (ValueError, TypeError):
                        raise ProviderError(f"{self.name}: audio that is not base64", provider=self.name) from None
                    yield pcm
                elif data.get("message") or data.get("error"):
                    raise service.message_error(data)
                if data.get("isFinal"):
                    return
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
