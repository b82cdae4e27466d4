"""A Realtime-protocol server on loopback backed by the voice mode's pieces (the local duplex peer's server).

:class:`LocalRealtimeServer` speaks the OpenAI Realtime protocol (the GA
event names) with a speech recogniser, a text model, the sentence chunker
and a synthesizer. ``response.cancel`` stops the model and the synthesis;
``conversation.item.truncate`` cuts the server's own copy of the reply at
what was played, so the next answer is given to the conversation the user heard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from rxkit.audio.convert import Resampler
from rxkit.audio.stt import STT, Recognition
from rxkit.audio.tts import TTS
from rxkit.elements import AudioFrame, EndOfTurn, ErrorElement, Sentence
from rxkit.errors import RxkitError
from rxkit.graph import Graph, astream
from rxkit.operators import sentence_chunker, synthesize
from rxkit.providers.base import Provider
from rxkit.types import ChatRequest, Message

__all__ = ["RATE", "LocalRealtimeServer"]

RATE = 24000
"""The Realtime protocol's output audio: PCM16 mono at 24 kHz."""
_CHUNK = RATE * 2 // 10  # 100 ms per audio delta


class LocalRealtimeServer:
    """A Realtime-protocol server on 127.0.0.1 backed by a speech recogniser, a text model and a synthesizer.

    What it takes (client events, GA names): ``session.update`` (its
    ``instructions``, the input rate), ``input_audio_buffer.append`` /
    ``commit`` / ``clear``, ``response.create`` / ``cancel``,
    ``conversation.item.create`` (messages) and ``conversation.item.truncate``.
    What it sends: ``session.created`` / ``updated``, ``input_audio_buffer.committed``,
    ``conversation.item.input_audio_transcription.completed``, ``response.created``,
    ``response.output_audio_transcript.delta`` (a sentence) before that
    sentence's ``response.output_audio.delta`` events, ``response.done`` (its
    usage, or status ``cancelled`` / ``failed``), ``conversation.item.truncated``
    and ``error`` events shaped as the API's. No server VAD: the client commits.

    >>> server = LocalRealtimeServer(provider, stt, tts, api_key="k")  # doctest: +SKIP
    >>> url = await server.start(); ...; await server.stop()            # doctest: +SKIP
    """

    def __init__(self, provider: Provider, stt: STT, tts: TTS, *, api_key: str) -> None:
        self.provider = provider
        self.stt = stt
        self.tts = tts
        self.api_key = api_key
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ids = 0

    async def start(self) -> str:
        """Listen on a free loopback port; returns the base URL (``ws://127.0.0.1:PORT/v1``)."""
        app = web.Application()
        app.router.add_get("/v1/realtime", self._connect)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        """Close the connections and the listening socket. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_{self._ids:04d}"

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {self.api_key}"):
            error = {"message": "Incorrect API key provided.", "code": "invalid_api_key"}
            return web.json_response({"error": {**error, "type": "invalid_request_error"}}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = _Connection(self, ws)
        await conn.send({"type": "session.created", "session": {"type": "realtime", "id": self._id("sess")}})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await conn.client_event(msg.data)
        finally:
            await conn.close()
        return ws


class _Connection:
    """One client's conversation on the server: its audio buffer, its items, the reply in flight."""

    def __init__(self, server: LocalRealtimeServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.rate = 16000
        self.instructions = ""
        self.conversation: list[Message] = []
        self.items: dict[str, tuple[int, int]] = {}  # assistant item id -> (index in conversation, audio ms)
        self.recognition: Recognition | None = None
        self.pending = bytearray()  # input audio not yet given to the recogniser (less than 100 ms)
        self.buffered = 0  # bytes of input audio given to the recogniser since the last commit
        self.reply: asyncio.Task[None] | None = None

    async def send(self, event: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps({"event_id": self.server._id("event"), **event}))

    async def error(self, code: str, message: str, param: str | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self.send({"type": "error", "error": error})

    async def close(self) -> None:
        await self.cancel_reply()
        if self.recognition is not None:
            self.recognition.close()
            self.recognition = None

    async def client_event(self, data: str) -> None:
        try:
            event = json.loads(data)
            kind = event["type"]
            handler = _HANDLERS.get(kind)
            if handler is None:
                await self.error("invalid_value", f"Invalid value: '{kind}'.", "type")
                return
            await handler(self, event)
        except (ValueError, KeyError, TypeError) as exc:
            await self.error("invalid_request", f"The event could not be read ({type(exc).__name__}: {exc}).")

    async def session_update(self, event: dict[str, Any]) -> None:
        session = event["session"]
        self.instructions = session.get("instructions") or self.instructions
        audio_format = ((session.get("audio") or {}).get("input") or {}).get("format") or {}
        self.rate = int(audio_format.get("rate") or self.rate)
        await self.send({"type": "session.updated", "session": session})

    async def append(self, event: dict[str, Any]) -> None:
        pending = self.pending
        pending += base64.b64decode(event["audio"], validate=True)
        if len(pending) >= self.rate * 2 // 10:  # 100 ms to the recogniser at a time, as transcribe() does
            await self.feed()

    async def feed(self) -> None:
        if self.recognition is None:
            self.recognition = self.server.stt.start(partials=False)
        pcm = bytes(self.pending)
        self.pending.clear()
        self.buffered += len(pcm)
        await self.recognition.feed(pcm, self.rate)

    async def commit(self, event: dict[str, Any]) -> None:
        if self.pending:
            await self.feed()
        ms = self.buffered * 1000 // (2 * self.rate)
        if self.recognition is None or ms < 100:
            message = f"Error committing input audio buffer: buffer too small. Expected at least 100ms, got {ms}ms."
            await self.error("input_audio_buffer_commit_empty", message)
            return
        recognition, self.recognition, self.buffered = self.recognition, None, 0
        transcript = (await recognition.finish()).text
        item_id = self.server._id("item")
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        self.conversation.append(Message.user(transcript))
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
            }
        )

    async def clear(self, event: dict[str, Any]) -> None:
        if self.recognition is not None:
            self.recognition.close()
        self.recognition, self.buffered = None, 0
        self.pending.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def item_create(self, event: dict[str, Any]) -> None:
        item = event["item"]
        if item.get("type") != "message" or item.get("role") not in ("user", "assistant", "system"):
            await self.error("invalid_value", "The local peer takes message items only (no tool outputs).", "item")
            return
        text = "".join(c.get("text") or c.get("transcript") or "" for c in item["content"])
        make = {"user": Message.user, "assistant": Message.assistant, "system": Message.system}[item["role"]]
        self.conversation.append(make(text))
        await self.send({"type": "conversation.item.added", "item": {**item, "id": self.server._id("item")}})

    async def truncate(self, event: dict[str, Any]) -> None:
        found = self.items.get(event["item_id"])
        if found is None:
            await self.error("invalid_value", f"Item with item_id '{event['item_id']}' not found.", "item_id")
            return
        index, audio_ms = found
        end = int(event["audio_end_ms"])
        if end > audio_ms:
            message = f"Audio content of {audio_ms}ms is already shorter than {end}ms"
            await self.error("invalid_value", message, "audio_end_ms")
            return
        text = self.conversation[index].text
        self.conversation[index] = Message.assistant(_spoken_part(text, end / audio_ms if audio_ms else 1.0))
        truncated = {"item_id": event["item_id"], "content_index": 0, "audio_end_ms": end}
        await self.send({"type": "conversation.item.truncated", **truncated})

    async def response_create(self, event: dict[str, Any]) -> None:
        if self.reply is not None and not self.reply.done():
            message = "Conversation already has an active response in progress."
            await self.error("conversation_already_has_active_response", message)
            return
        response_id = self.server._id("resp")
        await self.send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        self.reply = asyncio.get_running_loop().create_task(self.respond(response_id))

    async def response_cancel(self, event: dict[str, Any]) -> None:
        if self.reply is None or self.reply.done():
            await self.error("response_cancel_not_active", "Cancellation failed: no active response found")
            return
        await self.cancel_reply()

    async def cancel_reply(self) -> None:
        reply = self.reply
        if reply is not None and not reply.done():
            reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reply

    async def respond(self, response_id: str) -> None:
        """Answer the conversation: each sentence's transcript, then its audio; ``response.done`` last."""
        item_id = self.server._id("item")
        index = len(self.conversation)
        system = [Message.system(self.instructions)] if self.instructions else []
        request = ChatRequest(messages=[*system, *self.conversation])
        self.conversation.append(Message.assistant(""))
        spoken: list[str] = []
        audio_ms = 0
        usage: dict[str, Any] = {}
        status = "completed"
        common = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        resample = Resampler(self.server.tts.sample_rate, RATE)
        speech = Graph.chain(sentence_chunker(), synthesize(self.server.tts, keep_text=True))
        try:
            item = {"id": item_id, "type": "message", "role": "assistant", "content": []}
            await self.send({"type": "response.output_item.added", "response_id": response_id, "item": item})
            async for x in astream(self.server.provider.stream(request), through=speech):
                if isinstance(x, AudioFrame):
                    pcm = resample.process(x.pcm)
                    for i in range(0, len(pcm), _CHUNK):
                        chunk = pcm[i : i + _CHUNK]
                        audio_ms += len(chunk) * 1000 // (2 * RATE)
                        self.items[item_id] = (index, audio_ms)
                        delta = base64.b64encode(chunk).decode("ascii")
                        await self.send({"type": "response.output_audio.delta", **common, "delta": delta})
                elif isinstance(x, Sentence):
                    text = (" " if spoken else "") + x.text
                    spoken.append(text)
                    self.conversation[index] = Message.assistant("".join(spoken))
                    await self.send({"type": "response.output_audio_transcript.delta", **common, "delta": text})
                elif isinstance(x, EndOfTurn) and x.response is not None:
                    used = x.response.usage
                    usage = {
                        "input_tokens": used.input_tokens,
                        "output_tokens": used.output_tokens,
                        "total_tokens": used.input_tokens + used.output_tokens,
                        "input_token_details": {"text_tokens": used.input_tokens, "audio_tokens": 0},
                        "output_token_details": {"text_tokens": used.output_tokens, "audio_tokens": 0},
                    }
                elif isinstance(x, ErrorElement):
                    raise x.error
        except asyncio.CancelledError:
            await self.done(response_id, "cancelled", usage, "client_cancelled")
            raise
        except RxkitError as exc:  # the model or the synthesizer failed: an error event, the session goes on
            status = "failed"
            error = {"type": "server_error", "code": type(exc).__name__, "message": str(exc), "param": None}
            await self.send({"type": "error", "error": error})
        await self.send({"type": "response.output_audio.done", **common})
        await self.done(response_id, status, usage, None)

    async def done(self, response_id: str, status: str, usage: dict[str, Any], reason: str | None) -> None:
        details = {"type": status, "reason": reason} if reason else None
        response = {"id": response_id, "status": status, "status_details": details, "usage": usage}
        await self.send({"type": "response.done", "response": response})


_HANDLERS = {
    "session.update": _Connection.session_update,
    "input_audio_buffer.append": _Connection.append,
    "input_audio_buffer.commit": _Connection.commit,
    "input_audio_buffer.clear": _Connection.clear,
    "conversation.item.create": _Connection.item_create,
    "conversation.item.truncate": _Connection.truncate,
    "response.create": _Connection.response_create,
    "response.cancel": _Connection.response_cancel,
}


def _spoken_part(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text`` cut back to a word: the server's copy of a reply as it was heard."""
    if fraction >= 1:
        return text
    cut = text[: int(len(text) * max(fraction, 0.0))]
    return cut.rsplit(" ", 1)[0] if " " in cut and len(cut) < len(text) and not text[len(cut)].isspace() else cut
