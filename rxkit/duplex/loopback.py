"""A scripted OpenAI Realtime server on loopback: try the duplex graph with no key, test your own code against it.

``GET {base}/realtime?model=...`` upgrades to a WebSocket when
``Authorization: Bearer <key>`` is right (else HTTP 401, as the API answers).
It then behaves as the real server does for what rxkit uses, event shapes
from openai-python's ``types/realtime``:

* ``session.created`` first; ``session.update`` -> ``session.updated``
  (``session.type`` must be ``"realtime"``);
* ``input_audio_buffer.append`` buffers base64 PCM16 at 24 kHz; with
  ``server_vad`` turn detection a loud block starts speech
  (``input_audio_buffer.speech_started``, which cancels a reply in flight:
  ``response.done`` with status ``cancelled``, reason ``turn_detected``) and
  ``silence_ms`` of quiet ends it (``speech_stopped``, ``committed``, the
  user's transcription ``delta`` / ``completed``, then a response);
* ``input_audio_buffer.commit`` (an empty buffer is an error), ``clear``;
* ``response.create`` streams the next scripted :class:`Reply`: audio deltas
  (a tone) with their transcript deltas, or a function call with streamed
  arguments; ``response.done`` carries the usage; ``rate_limits.updated``
  follows ``response.created``; ``response.cancel`` with no reply in flight
  is an error (``response_cancel_not_active``);
* ``conversation.item.create`` (messages, ``function_call_output`` naming a
  known call) and ``conversation.item.truncate`` (an assistant audio item,
  ``audio_end_ms`` within the audio sent) -> ``conversation.item.truncated``;
* malformed client events (not JSON, no or unknown ``type``, a missing
  field) get an ``error`` event naming the problem, as the real server does,
  and the session stays open.

Fault knobs: ``drop_after`` (cut the socket after that many ``response.done``),
``cut_mid_reply`` (cut it halfway through the next reply's audio),
``error_on_response`` (send an error event instead of the next reply).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["API_KEY", "RealtimeServer", "Reply", "tone"]

API_KEY = "sk-test-realtime-0123456789abcdef"
RATE = 24000

_CLIENT_EVENTS = {
    "session.update": ("session",),
    "input_audio_buffer.append": ("audio",),
    "input_audio_buffer.commit": (),
    "input_audio_buffer.clear": (),
    "response.create": (),
    "response.cancel": (),
    "conversation.item.create": ("item",),
    "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
    "conversation.item.retrieve": ("item_id",),
    "output_audio_buffer.clear": (),
}


def tone(ms: int, rate: int = RATE, amplitude: int = 8000) -> bytes:
    """``ms`` of a 440 Hz tone, PCM16 mono."""
    n = rate * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n)))


@dataclass
class Reply:
    """One scripted response: spoken ``text`` over ``audio_ms`` of audio, or a ``tool`` call (name, arguments)."""

    text: str = "Hello there, how can I help?"
    audio_ms: int = 600
    tool: tuple[str, str] | None = None
    chunk_ms: int = 100
    pace_s: float = 0.0  # pause after each audio chunk (a reply long enough to be interrupted)


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    server_vad: bool = False
    silence_ms: int = 500
    create_response: bool = True
    buffer: bytearray = field(default_factory=bytearray)
    speaking: bool = False
    quiet_ms: int = 0
    heard_ms: int = 0  # audio received since the connection opened (the audio clock of VAD events)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    response: asyncio.Task[None] | None = None
    response_id: str = ""
    active: bool = False  # a response is in progress (False as soon as it is cancelled)
    done: int = 0


class RealtimeServer:
    """Run with ``async with RealtimeServer() as server``; ``server.url`` is the base URL (``ws://...``)."""

    def __init__(
        self,
        *,
        drop_after: int | None = None,
        cut_mid_reply: bool = False,
        greet: list[dict[str, Any]] | None = None,
        error_on_response: dict[str, Any] | None = None,
    ) -> None:
        # The stand-in server's scripts (what a test or notebook puts there), not stream buffers.
        self.replies: deque[Reply] = deque()
        self.transcripts: deque[str] = deque()
        self.received: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.connections = 0
        self.closed_connections = 0
        self.truncated: list[tuple[str, int]] = []
        self.drop_after = drop_after
        self.cut_mid_reply = cut_mid_reply
        self.greet = greet or []  # extra server events sent right after session.created
        self.error_on_response = error_on_response
        self.conversations: list[list[dict[str, Any]]] = []
        self._ids = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> RealtimeServer:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_{self._ids:04d}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            body = {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
            return web.json_response(body, status=401)
        if not request.query.get("model"):
            return web.json_response({"error": {"message": "Missing required parameter: 'model'."}}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        conn = _Conn(ws)
        self.conversations.append([])
        session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self._id("sess"),
            "model": request.query["model"],
        }
        await self._send(conn, {"type": "session.created", "session": session})
        for event in self.greet:
            await self._send(conn, event)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._client_event(conn, msg.data)
        finally:
            if conn.response is not None:
                conn.response.cancel()
            self.closed_connections += 1
        return ws

    async def _send(self, conn: _Conn, event: dict[str, Any]) -> None:
        if not conn.ws.closed:
            await conn.ws.send_str(json.dumps({"event_id": self._id("event"), **event}))

    async def _error(
        self, conn: _Conn, code: str, message: str, param: str | None = None, event_id: Any = None
    ) -> None:
        error = {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        self.errors.append(error)
        await self._send(conn, {"type": "error", "error": error})

    async def _client_event(self, conn: _Conn, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            await self._error(conn, "invalid_json", "The server could not parse the JSON in the event.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._error(conn, "missing_required_parameter", "Missing required parameter: 'type'.", "type")
            return
        self.received.append(event)
        kind = event["type"]
        eid = event.get("event_id")
        if kind not in _CLIENT_EVENTS:
            supported = ", ".join(f"'{k}'" for k in _CLIENT_EVENTS)
            await self._error(
                conn, "invalid_value", f"Invalid value: '{kind}'. Supported values are: {supported}.", "type", eid
            )
            return
        for name in _CLIENT_EVENTS[kind]:
            if name not in event:
                await self._error(
                    conn, "missing_required_parameter", f"Missing required parameter: '{name}'.", name, eid
                )
                return
        await getattr(self, "_on_" + kind.replace(".", "_"))(conn, event)

    async def _on_session_update(self, conn: _Conn, event: dict[str, Any]) -> None:
        session = event["session"]
        if session.get("type") != "realtime":
            await self._error(
                conn, "invalid_value", "Invalid value for 'session.type'.", "session.type", event.get("event_id")
            )
            return
        detection: dict[str, Any] = ((session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}
        conn.server_vad = detection.get("type") == "server_vad"
        if detection:
            conn.silence_ms = detection.get("silence_duration_ms", 500)
            conn.create_response = detection.get("create_response", True)
        await self._send(conn, {"type": "session.updated", "session": session})

    async def _on_input_audio_buffer_append(self, conn: _Conn, event: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(event["audio"], validate=True)
        except ValueError:
            await self._error(conn, "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio")
            return
        if len(pcm) % 2:
            await self._error(conn, "invalid_value", "Invalid 'audio': PCM16 needs whole samples.", "audio")
            return
        conn.buffer += pcm
        ms = len(pcm) * 1000 // (2 * RATE)
        conn.heard_ms += ms
        if not conn.server_vad:
            return
        n = len(pcm) // 2
        loud = n and max(abs(s) for s in struct.unpack(f"<{n}h", pcm)) > 1000
        if loud:
            conn.quiet_ms = 0
            if not conn.speaking:
                conn.speaking = True
                item = self._id("item")
                await self._send(
                    conn,
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": conn.heard_ms - ms,
                        "item_id": item,
                    },
                )
                if conn.active and conn.response is not None:
                    conn.response.cancel()
                    await self._response_done(conn, "cancelled", "turn_detected")
        elif conn.speaking:
            conn.quiet_ms += ms
            if conn.quiet_ms >= conn.silence_ms:
                conn.speaking = False
                await self._send(
                    conn,
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": conn.heard_ms - conn.quiet_ms,
                        "item_id": "",
                    },
                )
                await self._commit(conn)
                if conn.create_response:
                    self._start_response(conn)

    async def _commit(self, conn: _Conn) -> None:
        item_id = self._id("item")
        conn.items[item_id] = {"type": "message", "role": "user", "audio_ms": len(conn.buffer) * 1000 // (2 * RATE)}
        conn.buffer.clear()
        await self._send(conn, {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        text = self.transcripts.popleft() if self.transcripts else "hello"
        self.conversations[-1].append({"role": "user", "text": text})
        for word in text.split(" "):
            await self._send(
                conn,
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": word + " ",
                },
            )
        usage = {"type": "tokens", "input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
        await self._send(
            conn,
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": usage,
            },
        )

    async def _on_input_audio_buffer_commit(self, conn: _Conn, event: dict[str, Any]) -> None:
        if len(conn.buffer) < 2 * RATE // 10:
            ms = len(conn.buffer) * 1000 // (2 * RATE)
            msg = (
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {ms:.2f}ms of audio."
            )
            await self._error(conn, "input_audio_buffer_commit_empty", msg, None, event.get("event_id"))
            return
        await self._commit(conn)

    async def _on_input_audio_buffer_clear(self, conn: _Conn, event: dict[str, Any]) -> None:
        conn.buffer.clear()
        await self._send(conn, {"type": "input_audio_buffer.cleared"})

    async def _on_output_audio_buffer_clear(self, conn: _Conn, event: dict[str, Any]) -> None:
        await self._error(conn, "invalid_value", "output_audio_buffer.clear is only supported for WebRTC connections.")

    async def _on_response_create(self, conn: _Conn, event: dict[str, Any]) -> None:
        if conn.active:
            await self._error(
                conn,
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
                None,
                event.get("event_id"),
            )
            return
        self._start_response(conn)

    async def _on_response_cancel(self, conn: _Conn, event: dict[str, Any]) -> None:
        if not conn.active:
            await self._error(
                conn,
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
                event.get("event_id"),
            )
            return
        if conn.response is not None:
            conn.response.cancel()
        await self._response_done(conn, "cancelled", "client_cancelled")

    async def _on_conversation_item_create(self, conn: _Conn, event: dict[str, Any]) -> None:
        item = event["item"]
        kind = item.get("type")
        if kind == "function_call_output":
            calls = {i.get("call_id") for i in conn.items.values() if i["type"] == "function_call"}
            if item.get("call_id") not in calls:
                await self._error(
                    conn,
                    "invalid_value",
                    f"Tool call ID '{item.get('call_id')}' not found in conversation.",
                    "item.call_id",
                    event.get("event_id"),
                )
                return
        elif kind == "message":
            if item.get("role") not in ("user", "assistant", "system") or not isinstance(item.get("content"), list):
                await self._error(
                    conn,
                    "invalid_value",
                    "Invalid 'item': a message needs a role and a content list.",
                    "item",
                    event.get("event_id"),
                )
                return
            text = "".join(c.get("text") or c.get("transcript") or "" for c in item["content"])
            self.conversations[-1].append({"role": item["role"], "text": text})
        else:
            await self._error(conn, "invalid_value", f"Invalid value: '{kind}'.", "item.type", event.get("event_id"))
            return
        item_id = item.get("id") or self._id("item")
        conn.items[item_id] = {**item, "type": kind}
        await self._send(
            conn, {"type": "conversation.item.added", "previous_item_id": None, "item": {**item, "id": item_id}}
        )
        await self._send(
            conn, {"type": "conversation.item.done", "previous_item_id": None, "item": {**item, "id": item_id}}
        )

    async def _on_conversation_item_truncate(self, conn: _Conn, event: dict[str, Any]) -> None:
        item = conn.items.get(event["item_id"])
        eid = event.get("event_id")
        if item is None:
            await self._error(
                conn, "invalid_value", f"Item with item_id '{event['item_id']}' not found.", "item_id", eid
            )
            return
        if item.get("role") != "assistant" or "audio_ms" not in item:
            await self._error(
                conn, "invalid_value", "Only assistant messages with audio can be truncated.", "item_id", eid
            )
            return
        if event["audio_end_ms"] > item["audio_ms"]:
            await self._error(
                conn,
                "invalid_value",
                f"Audio content of {item['audio_ms']}ms is already shorter than {event['audio_end_ms']}ms",
                "audio_end_ms",
                eid,
            )
            return
        self.truncated.append((event["item_id"], event["audio_end_ms"]))
        await self._send(
            conn,
            {
                "type": "conversation.item.truncated",
                "item_id": event["item_id"],
                "content_index": event["content_index"],
                "audio_end_ms": event["audio_end_ms"],
            },
        )

    async def _on_conversation_item_delete(self, conn: _Conn, event: dict[str, Any]) -> None:
        conn.items.pop(event["item_id"], None)
        await self._send(conn, {"type": "conversation.item.deleted", "item_id": event["item_id"]})

    async def _on_conversation_item_retrieve(self, conn: _Conn, event: dict[str, Any]) -> None:
        await self._send(conn, {"type": "conversation.item.retrieved", "item": conn.items.get(event["item_id"], {})})

    def _start_response(self, conn: _Conn) -> None:
        conn.response_id = self._id("resp")
        conn.active = True
        conn.response = asyncio.get_running_loop().create_task(self._respond(conn))

    async def _respond(self, conn: _Conn) -> None:
        rid = conn.response_id
        await self._send(
            conn,
            {
                "type": "response.created",
                "response": {"id": rid, "object": "realtime.response", "status": "in_progress", "output": []},
            },
        )
        limits = [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5},
        ]
        await self._send(conn, {"type": "rate_limits.updated", "rate_limits": limits})
        if self.error_on_response is not None:
            error, self.error_on_response = self.error_on_response, None
            self.errors.append(error)
            await self._send(conn, {"type": "error", "error": error})
            await self._response_done(conn, "failed", None)
            return
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.tool is not None:
            name, args = reply.tool
            call_id, item_id = self._id("call"), self._id("item")
            item: dict[str, Any] = {
                "id": item_id,
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id,
                "name": name,
                "arguments": "",
            }
            conn.items[item_id] = {"type": "function_call", "call_id": call_id}
            await self._send(
                conn, {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item}
            )
            for i in range(0, len(args), 7):
                await self._send(
                    conn,
                    {
                        "type": "response.function_call_arguments.delta",
                        "response_id": rid,
                        "item_id": item_id,
                        "output_index": 0,
                        "call_id": call_id,
                        "delta": args[i : i + 7],
                    },
                )
            await self._send(
                conn,
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": rid,
                    "item_id": item_id,
                    "output_index": 0,
                    "call_id": call_id,
                    "arguments": args,  # no name: openai-python's ResponseFunctionCallArgumentsDoneEvent has none
                },
            )
            await self._response_done(conn, "completed", None)
            return
        item_id = self._id("item")
        conn.items[item_id] = {"type": "message", "role": "assistant", "audio_ms": 0}
        self.conversations[-1].append({"role": "assistant", "text": reply.text})
        item = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self._send(
            conn, {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item}
        )
        audio = tone(reply.audio_ms)
        chunk = RATE * 2 * reply.chunk_ms // 1000
        n = max(1, math.ceil(len(audio) / chunk))
        words = reply.text.split(" ")
        per = math.ceil(len(words) / n)
        common = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        for k in range(n):
            part = " ".join(words[k * per : (k + 1) * per])
            if part:
                await self._send(
                    conn,
                    {
                        "type": "response.output_audio_transcript.delta",
                        **common,
                        "delta": part + (" " if (k + 1) * per < len(words) else ""),
                    },
                )
            await self._send(
                conn,
                {
                    "type": "response.output_audio.delta",
                    **common,
                    "delta": base64.b64encode(audio[k * chunk : (k + 1) * chunk]).decode(),
                },
            )
            conn.items[item_id]["audio_ms"] += (
                reply.chunk_ms if (k + 1) * chunk <= len(audio) else (len(audio) - k * chunk) * 1000 // (2 * RATE)
            )
            if reply.pace_s:
                await asyncio.sleep(reply.pace_s)
            if self.cut_mid_reply and k == n // 2:
                self.cut_mid_reply = False
                self._abort(conn)
                return
        await self._send(conn, {"type": "response.output_audio.done", **common})
        await self._send(conn, {"type": "response.output_audio_transcript.done", **common, "transcript": reply.text})
        await self._response_done(conn, "completed", None)

    async def _response_done(self, conn: _Conn, status: str, reason: str | None) -> None:
        usage = {
            "total_tokens": 260,
            "input_tokens": 200,
            "output_tokens": 60,
            "input_token_details": {
                "text_tokens": 120,
                "audio_tokens": 80,
                "image_tokens": 0,
                "cached_tokens": 64,
                "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": 15, "audio_tokens": 45},
        }
        conn.active = False
        details = {"type": status, "reason": reason} if reason else None
        response = {
            "id": conn.response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "usage": usage,
        }
        await self._send(conn, {"type": "response.done", "response": response})
        conn.done += 1
        if self.drop_after is not None and conn.done >= self.drop_after:
            self.drop_after = None
            self._abort(conn)

    def _abort(self, conn: _Conn) -> None:
        transport = conn.ws._req.transport if conn.ws._req is not None else None  # cut without a close frame
        if transport is not None:
            transport.abort()
