"""What every cloud speech engine shares: its key, its address, its HTTP client and its errors."""

from __future__ import annotations

import asyncio
import io
import os
import wave
from typing import Any

import aiohttp
import orjson

from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ProviderError,
    ProviderTimeoutError,
    StreamInterruptedError,
    redact,
    register_secret,
    safe_url,
)
from rxkit.providers.http import HttpClient, HTTPOptions, http_error

__all__ = ["Service", "pcm16", "wav_bytes"]


class Service:
    """One cloud speech service as an engine holds it.

    ``api_key`` (or the environment variable ``env``) is registered as a
    secret, so no error, event or log line shows it. ``base_url`` defaults
    to the service's public address; it is shown to users only scrubbed.
    ``options`` are the same reliability knobs as a model provider's
    (:class:`~rxkit.providers.http.HTTPOptions`): connect timeout, idle
    timeout between messages, the whole-request limit.
    """

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None,
        env: str,
        base_url: str | None,
        default_url: str,
        options: HTTPOptions | None = None,
        client: HttpClient | None = None,
    ) -> None:
        self.name = name
        self.env = env
        self.api_key = api_key or os.environ.get(env) or None
        register_secret(self.api_key)
        url = (base_url or os.environ.get(f"{env.removesuffix('_API_KEY')}_BASE_URL") or default_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: base_url must start with http:// or https://, not {safe_url(url)!r}")
        self.base_url = url
        self.client = client or HttpClient(options)

    @property
    def options(self) -> HTTPOptions:
        return self.client.options

    def key(self) -> str:
        """The API key; a :class:`~rxkit.errors.ConfigError` naming the variable when there is none."""
        if not self.api_key:
            raise ConfigError(f"{self.name} needs an API key: set {self.env} or pass api_key=")
        return self.api_key

    def ws_url(self, path: str) -> str:
        """``base_url`` + ``path`` with the WebSocket scheme (http -> ws, https -> wss)."""
        url = self.base_url + path
        return "ws" + url[4:] if url.startswith("http") else url

    def shown(self, url: str) -> str:
        return safe_url(url)

    async def ws_connect(self, url: str, headers: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket; a refused handshake becomes the typed HTTP error, a dead server a network one."""
        session = self.client.session()
        try:
            return await session.ws_connect(
                url,
                headers=headers,
                heartbeat=None,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=16 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            detail = ""
            if exc.headers is not None:  # Deepgram says why in a header; others in the reason
                detail = exc.headers.get("dg-error", "") or exc.headers.get("x-error", "")
            raise http_error(self.name, exc.status, detail or str(exc.message or "")) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise StreamInterruptedError(
                f"{self.name}: cannot connect to {self.shown(url)}: {redact(str(exc)) or type(exc).__name__}",
                provider=self.name,
            ) from None

    async def check(self, response: aiohttp.ClientResponse) -> None:
        """Raise the typed error for an HTTP error status (the service's own message, redacted)."""
        if response.status >= 400:
            body = (await response.read()).decode("utf-8", "replace")
            raise http_error(self.name, response.status, body)

    def closed_error(self, ws: aiohttp.ClientWebSocketResponse, what: str, reason: str = "") -> ProviderError:
        """The error for a socket the server closed before ``what`` was done.

        ``reason`` is the close frame's, or aiohttp's exception for a broken
        frame (:meth:`receive` passes either): a caller without one has seen
        no exception (a send that failed, a normal close too early).
        """
        code = ws.close_code
        if code in (1008, 4001, 4003) and "auth" in reason.lower():
            return AuthenticationError(f"{self.name}: {redact(reason)}", provider=self.name, status=401)
        if code is None or code == 1006:
            return StreamInterruptedError(f"{self.name}: the connection dropped before {what}", provider=self.name)
        return ProviderError(
            f"{self.name}: the server closed the connection (code {code}{': ' + redact(reason) if reason else ''}) "
            f"before {what}",
            provider=self.name,
        )

    def message_error(self, data: dict[str, Any]) -> ProviderError:
        """The error for a JSON error message the server sent on a socket."""
        message = data.get("message") or data.get("description") or data.get("err_msg") or data.get("error") or data
        kind = data.get("error") or data.get("err_code") or data.get("variant") or ""
        text = redact(str(message))
        if isinstance(kind, str) and kind and kind != message:
            text += f" ({redact(kind)})"
        if "auth" in text.lower() or "api key" in text.lower() or "api_key" in text.lower():
            return AuthenticationError(f"{self.name}: {text}", provider=self.name, status=401)
        return ProviderError(f"{self.name}: {text}", provider=self.name)

    async def receive(self, ws: aiohttp.ClientWebSocketResponse, what: str) -> Any:
        """The next JSON message, waiting at most ``idle_timeout``; None when the server closed normally."""
        try:
            msg = await asyncio.wait_for(ws.receive(), self.options.idle_timeout)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{self.name}: no message for {self.options.idle_timeout:g} s while waiting for {what}",
                provider=self.name,
            ) from None
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raw = msg.data if isinstance(msg.data, (bytes, str)) else b""
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ProviderError(
                    f"{self.name}: the server sent a message that is not JSON", provider=self.name
                ) from None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            if ws.close_code == 1000:
                return None
            reason = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.extra, str) else ""
            raise self.closed_error(ws, what, reason)  # the reason says why: a revoked key, bad audio...
        raise self.closed_error(ws, what, str(msg.data or ""))  # ERROR: aiohttp's exception (too big, bad frame)


def pcm16(pcm: Any, sample_rate: int, channels: int, to_rate: int) -> bytes:
    """``pcm`` as 16-bit mono at ``to_rate``; bytes already in that format pass through uncopied."""
    if channels == 1 and sample_rate == to_rate and isinstance(pcm, bytes):
        return pcm
    from rxkit.audio.convert import resample, to_mono  # numpy, the voice extra

    return resample(to_mono(pcm, channels), sample_rate, to_rate).tobytes()


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A 16-bit mono WAV file in memory (what upload endpoints take)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return out.getvalue()
