"""A loopback server that speaks four cloud speech protocols, errors included, for tests.

* ``POST /v1/audio/transcriptions`` (OpenAI): multipart upload checked as the
  API checks it (``Authorization: Bearer``, a ``file`` that is audio and
  named so, a ``model``); ``stream=true`` answers ``transcript.text.delta`` events and
  ``transcript.text.done`` with usage; ``whisper-1`` refuses ``stream`` and
  answers one JSON body.
* ``POST /v1/audio/speech`` (OpenAI): JSON checked (``model``, ``voice``,
  ``input`` at most 4096 characters, ``sse`` refused for ``tts-1``); PCM at
  24 kHz as ``speech.audio.delta`` events then ``speech.audio.done``, or the
  raw body in odd-sized pieces for ``stream_format: "audio"``.
* ``GET /v1/listen`` (Deepgram, WebSocket): ``Authorization: Token`` checked
  before the upgrade (401 with a ``dg-error`` header and a JSON body);
  binary audio in; each 0.25 s of audio reveals one more word of
  :attr:`SpeechServer.transcript` as an interim ``Results``, every fourth word
  closes a final segment; ``CloseStream`` finalises the rest, sends
  ``Metadata`` and closes with 1000; a text message that is not a known
  control message closes with 1008 (``DATA-0000``).
* ``GET /v1/text-to-speech/{voice_id}/stream-input`` (ElevenLabs, WebSocket):
  ``xi-api-key`` checked after the upgrade (an error message, then close
  1008), the first message must be ``{"text": " "}``, ``flush`` and the
  closing ``{"text": ""}`` make audio, which goes out as base64 PCM at the
  ``output_format`` rate with alignment, then ``{"isFinal": true}`` and close
  with 1000.

Audio the server makes is a sawtooth whose sample values count up from the
first word, so a test can check that every byte arrived, in order. Fault
knobs: ``fail`` (status, body) for the next HTTP request, ``close_with``
(code, reason) to close a socket after the first audio, ``drop_after`` (cut the
connection after N messages), ``hang`` (stop after the first piece of an
answer and wait for the client to leave). ``active`` counts handlers still
running: 0 once every client has gone.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API_KEY = "test-speech-key-0123456789"
# what the transcription endpoint takes, told by the upload's file name
_AUDIO_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
WORD_SECONDS = 0.05  # speech the server makes per word


def word_audio(words: int, rate: int, start: int = 0) -> bytes:
    """The PCM the server speaks for ``words`` words: sample i is (start + i) mod 30000, 16-bit LE."""
    n = round(WORD_SECONDS * rate) * words
    return b"".join(((start + i) % 30000).to_bytes(2, "little", signed=True) for i in range(n))


@dataclass
class SpeechServer:
    transcript: str = "what is the weather like in paris today"
    key: str = API_KEY
    fail: tuple[int, str] | None = None
    close_with: tuple[int, str] | None = None
    drop_after: int | None = None
    hang: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    url: str = ""
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # set when a hung client left
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> SpeechServer:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self._stream_input)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until every handler has ended (the client closed what it opened)."""
        for _ in range(int(timeout / 0.01)):
            if self.active == 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.active} handler(s) still running")

    # -- OpenAI ----------------------------------------------------------------------
    def _openai_error(
        self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return web.json_response(body, status=status)

    def _openai_auth(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if given != f"Bearer {self.key}":
            shown = given.removeprefix("Bearer ")
            return self._openai_error(
                401, f"Incorrect API key provided: {shown}. You can find your API key at the dashboard.",
                "invalid_request_error", "invalid_api_key",
            )  # fmt: skip
        if self.fail is not None:
            status, message = self.fail
            self.fail = None
            return self._openai_error(status, message, "server_error" if status >= 500 else "requests")
        return None

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        try:
            refused = self._openai_auth(request)
            if refused is not None:
                return refused
            form = await request.post()
            upload = form.get("file")
            model = form.get("model")
            record: dict[str, Any] = {
                "path": "transcriptions",
                "fields": {k: v for k, v in form.items() if k != "file"},
            }
            self.requests.append(record)
            if not model:
                return self._openai_error(
                    400, "you must provide a model parameter", "invalid_request_error", param="model"
                )
            if not isinstance(upload, web.FileField):
                return self._openai_error(400, "you must provide a file", "invalid_request_error", param="file")
            record["file"] = (upload.filename, upload.content_type)
            if upload.filename.rpartition(".")[2].lower() not in _AUDIO_EXTENSIONS:  # the API goes by the name
                formats = ", ".join(repr(e) for e in _AUDIO_EXTENSIONS)
                return self._openai_error(
                    400, f"Invalid file format. Supported formats: [{formats}]", "invalid_request_error"
                )
            try:
                with wave.open(io.BytesIO(upload.file.read())) as w:
                    record["wav"] = (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())
            except (wave.Error, EOFError):
                return self._openai_error(400, "Invalid file format.", "invalid_request_error", param="file")
            stream = form.get("stream") == "true"
            if model == "whisper-1" and stream:
                return self._openai_error(
                    400, "Streaming is not supported for whisper-1.", "invalid_request_error", param="stream"
                )
            if not stream:
                return web.json_response({"text": self.transcript})
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            words = self.transcript.split()
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                await response.write(_sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None}))
                if self.hang:
                    await self._wait_forever()
                if self.drop_after is not None and i + 1 >= self.drop_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
            usage = {"type": "tokens", "input_tokens": 14, "output_tokens": len(words), "total_tokens": 14 + len(words)}
            await response.write(_sse({"type": "transcript.text.done", "text": self.transcript, "usage": usage}))
            await response.write_eof()
            return response
        finally:
            self.active -= 1

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        try:
            refused = self._openai_auth(request)
            if refused is not None:
                return refused
            body = await request.json()
            self.requests.append({"path": "speech", "body": body, "content_type": request.content_type})
            for name in ("model", "input", "voice"):
                if not body.get(name):
                    return self._openai_error(
                        400, f"Missing required parameter: '{name}'.", "invalid_request_error", param=name
                    )
            if len(body["input"]) > 4096:
                return self._openai_error(
                    400, "input is longer than 4096 characters", "invalid_request_error", param="input"
                )
            if body.get("response_format") != "pcm":
                return self._openai_error(
                    400, "this server speaks pcm only", "invalid_request_error", param="response_format"
                )
            sse = body.get("stream_format", "audio") == "sse"
            if sse and body["model"] in ("tts-1", "tts-1-hd"):
                return self._openai_error(400, "sse stream format is not supported for tts-1.", "invalid_request_error")
            words = len(body["input"].split())
            pcm = word_audio(words, 24_000)
            if not sse:
                response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
                await response.prepare(request)
                for i in range(0, len(pcm), 1001):  # odd pieces: a sample split across chunks
                    await response.write(pcm[i : i + 1001])
                await response.write_eof()
                return response
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            step = round(WORD_SECONDS * 24_000) * 2
            for n, i in enumerate(range(0, len(pcm), step)):
                audio = base64.b64encode(pcm[i : i + step]).decode()
                await response.write(_sse({"type": "speech.audio.delta", "audio": audio}))
                if self.hang:
                    await self._wait_forever()
                if self.drop_after is not None and n + 1 >= self.drop_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
            usage = {"input_tokens": words, "output_tokens": words * 10, "total_tokens": words * 11}
            await response.write(_sse({"type": "speech.audio.done", "usage": usage}))
            await response.write_eof()
            return response
        finally:
            self.active -= 1

    # -- Deepgram ----------------------------------------------------------------------
    async def _listen(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        try:
            if request.headers.get("Authorization") != f"Token {self.key}":
                body = {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "0000"}
                return web.json_response(body, status=401, headers={"dg-error": "Invalid credentials."})
            q = request.query
            if q.get("encoding") != "linear16" or not q.get("sample_rate", "").isdigit():
                body = {"err_code": "Bad Request", "err_msg": "encoding and sample_rate are required for raw audio"}
                return web.json_response(body, status=400, headers={"dg-error": body["err_msg"]})
            record: dict[str, Any] = {"path": "listen", "query": dict(q), "audio": 0, "controls": []}
            self.requests.append(record)
            ws = web.WebSocketResponse(autoping=True)
            await ws.prepare(request)
            rate = int(q["sample_rate"])
            interim = q.get("interim_results") == "true"
            words = self.transcript.split()
            revealed = finalized = 0
            sent = 0

            async def results(upto: int, final: bool, **extra: Any) -> None:
                nonlocal finalized, sent
                text = " ".join(words[finalized:upto])
                message = {
                    "type": "Results", "channel_index": [0, 1], "duration": 0.25, "start": finalized * 0.25,
                    "is_final": final, "speech_final": final,
                    "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": []}]},
                    "metadata": {"request_id": "0000", "model_info": {"name": "general", "arch": "nova-3"}},
                    **extra,
                }  # fmt: skip
                await ws.send_str(json.dumps(message))
                sent += 1
                if final:
                    finalized = upto

            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if not msg.data:
                        continue
                    before = record["audio"]
                    record["audio"] += len(msg.data)
                    quarter = rate // 2  # bytes of 0.25 s
                    for _ in range(before // quarter, record["audio"] // quarter):
                        if revealed < len(words):
                            revealed += 1
                            if revealed - finalized >= 4:
                                await results(revealed, True)
                            elif interim:
                                await results(revealed, False)
                        if self.close_with is not None:
                            code, reason = self.close_with
                            await ws.close(code=code, message=reason.encode())
                            return ws
                        if self.drop_after is not None and sent >= self.drop_after:
                            assert request.transport is not None
                            request.transport.abort()
                            return ws
                elif msg.type == WSMsgType.TEXT:
                    try:
                        control = json.loads(msg.data).get("type")
                    except (ValueError, AttributeError):
                        control = None
                    record["controls"].append(control)
                    if control == "KeepAlive":
                        continue
                    if control == "Finalize":
                        await results(max(revealed, finalized), True, from_finalize=True)
                        continue
                    if control == "CloseStream":
                        if finalized < len(words):
                            await results(len(words), True)
                        metadata = {
                            "type": "Metadata", "transaction_key": "deprecated", "request_id": "0000",
                            "sha256": "0" * 64, "created": "2026-12-05T00:00:00.000Z",
                            "duration": record["audio"] / (2 * rate), "channels": 1,
                        }  # fmt: skip
                        await ws.send_str(json.dumps(metadata))
                        await ws.close(code=1000)
                        return ws
                    await ws.close(code=1008, message=b"DATA-0000: the text message is not a known control message")
                    return ws
            return ws
        finally:
            self.active -= 1

    # -- ElevenLabs ----------------------------------------------------------------------
    async def _stream_input(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        try:
            ws = web.WebSocketResponse(autoping=True)
            await ws.prepare(request)
            record: dict[str, Any] = {
                "path": "stream-input", "voice_id": request.match_info["voice_id"], "query": dict(request.query),
                "messages": [],
            }  # fmt: skip
            self.requests.append(record)

            async def refuse(message: str, error: str) -> web.WebSocketResponse:
                await ws.send_str(json.dumps({"message": message, "error": error, "code": 1008}))
                await ws.close(code=1008, message=message.encode()[:120])
                return ws

            if request.headers.get("xi-api-key") != self.key:
                return await refuse("Invalid API key", "invalid_api_key")
            fmt = request.query.get("output_format", "mp3_44100_128")
            if not fmt.startswith("pcm_") or not fmt[4:].isdigit():
                return await refuse(f"this server speaks pcm only, not {fmt}", "invalid_output_format")
            rate = int(fmt[4:])
            buffered = ""
            spoken = 0
            first = True
            chunks = 0
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    return await refuse("messages must be JSON text", "invalid_message")
                data = json.loads(msg.data)
                record["messages"].append(data)
                text = data.get("text")
                if not isinstance(text, str):
                    return await refuse("each message needs a text field", "invalid_message")
                if first:
                    first = False
                    if text != " ":
                        return await refuse("The first message must have text ' '", "invalid_message")
                    continue
                closing = text == ""
                buffered += text
                if data.get("flush") or closing:
                    for word in buffered.split():
                        pcm = word_audio(1, rate, spoken * round(WORD_SECONDS * rate))
                        spoken += 1
                        chars = list(word)
                        alignment = {
                            "chars": chars,
                            "charStartTimesMs": [i * 10 for i in range(len(chars))],
                            "charsDurationsMs": [10] * len(chars),
                        }
                        await ws.send_str(
                            json.dumps(
                                {
                                    "audio": base64.b64encode(pcm).decode(),
                                    "isFinal": None,
                                    "normalizedAlignment": alignment,
                                    "alignment": alignment,
                                }
                            )
                        )
                        chunks += 1
                        if self.hang:  # stop speaking but keep reading, as a live server does
                            try:
                                async for _ in ws:
                                    pass
                            finally:
                                self.gone.set()
                            return ws
                        if self.close_with is not None:
                            code, reason = self.close_with
                            await ws.close(code=code, message=reason.encode())
                            return ws
                        if self.drop_after is not None and chunks >= self.drop_after:
                            assert request.transport is not None
                            request.transport.abort()
                            return ws
                    buffered = ""
                if closing:
                    await ws.send_str(json.dumps({"isFinal": True}))
                    await ws.close(code=1000)
                    return ws
            return ws
        finally:
            self.active -= 1

    async def _wait_forever(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self.gone.set()


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"
