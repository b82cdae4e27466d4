"""A loopback server that speaks Gemini Live's ``BidiGenerateContent`` WebSocket protocol, for tests.

Message shapes from googleapis/python-genai's live module (camelCase on the
wire). The first client message must be ``setup`` naming ``models/...``;
the server answers ``setupComplete``. A wrong ``x-goog-api-key``, a first
message that is not ``setup``, or an unknown resumption handle close the
socket with code 1007 and a reason, as the real server does. Then:

* ``realtimeInput.audio`` (``audio/pcm;rate=16000``): a loud block starts the
  user's turn (``interrupted`` if the model was speaking), ``silence_ms`` of
  quiet ends it (``inputTranscription``, then the model's turn);
* ``clientContent`` with ``turnComplete`` starts the model's turn too;
* the model's turn: ``modelTurn`` parts with ``inlineData`` audio at 24 kHz
  and ``outputTranscription`` pieces, ``generationComplete``,
  ``turnComplete`` with the turn's ``usageMetadata`` beside it, then (with ``sessionResumption``
  in the setup) a ``sessionResumptionUpdate`` with a new handle; a scripted
  tool call sends ``toolCall`` and waits for the ``toolResponse`` (the user
  speaking meanwhile interrupts the turn and withdraws the call:
  ``toolCallCancellation``);
* a resumed session (``sessionResumption.handle``) keeps the conversation.

Fault knobs: ``go_away_after`` (send ``goAway`` after that many turns, and cut
the socket ``go_away_grace_s`` later unless the client left), ``drop_after``
(cut the socket without a close frame after that many turns).
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

from aiohttp import WSCloseCode, WSMsgType, web

from rxkit.duplex.loopback import Reply, tone

__all__ = ["API_KEY", "LiveServer", "Reply"]

API_KEY = "AIzaSyTest-loopback-0123456789abcdefghij"
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
IN_RATE, OUT_RATE = 16000, 24000


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    history: list[dict[str, Any]] = field(default_factory=list)
    resumable: bool = False
    speaking: bool = False
    quiet_ms: int = 0
    turn: asyncio.Task[None] | None = None
    tool_wait: asyncio.Future[Any] | None = None
    tool_id: str = ""
    turns: int = 0


class LiveServer:
    """Run with ``async with LiveServer() as server``; ``server.url`` is the base URL (``ws://...``)."""

    def __init__(
        self,
        *,
        go_away_after: int | None = None,
        go_away_grace_s: float = 2.0,
        drop_after: int | None = None,
        silence_ms: int = 500,
    ) -> None:
        self.replies: deque[Reply] = deque()
        self.transcripts: deque[str] = deque()
        self.received: list[dict[str, Any]] = []
        self.setups: list[dict[str, Any]] = []
        self.connections = 0
        self.closed_connections = 0
        self.go_away_after = go_away_after
        self.go_away_grace_s = go_away_grace_s
        self.cut_by_server = 0
        self.drop_after = drop_after
        self.silence_ms = silence_ms
        self.handles: dict[str, list[dict[str, Any]]] = {}
        self.histories: list[list[dict[str, Any]]] = []
        self._n = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> LiveServer:
        app = web.Application()
        app.router.add_get(PATH, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        conn = _Conn(ws)
        self.histories.append(conn.history)
        try:
            key = request.headers.get("x-goog-api-key") or request.query.get("key")
            if key != API_KEY:
                await ws.close(
                    code=WSCloseCode.INVALID_TEXT, message=b"API key not valid. Please pass a valid API key."
                )
                return ws
            first = await ws.receive()
            setup = json.loads(first.data).get("setup") if first.type is WSMsgType.TEXT else None
            if not isinstance(setup, dict) or not str(setup.get("model", "")).startswith("models/"):
                await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"Request contains an invalid argument: setup.")
                return ws
            self.setups.append(setup)
            resumption = setup.get("sessionResumption")
            if resumption is not None:
                conn.resumable = True
                handle = resumption.get("handle")
                if handle:
                    if handle not in self.handles:
                        await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"Invalid session resumption handle.")
                        return ws
                    conn.history.extend(self.handles[handle])
            await self._send(conn, {"setupComplete": {}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._message(conn, json.loads(msg.data))
        finally:
            if conn.turn is not None:
                conn.turn.cancel()
            self.closed_connections += 1
        return ws

    async def _send(self, conn: _Conn, message: dict[str, Any]) -> None:
        if not conn.ws.closed:
            await conn.ws.send_str(json.dumps(message))

    async def _message(self, conn: _Conn, message: dict[str, Any]) -> None:
        self.received.append(message)
        if "realtimeInput" in message:
            audio = message["realtimeInput"].get("audio")
            if audio is not None:
                assert audio["mimeType"] == "audio/pcm;rate=16000", audio["mimeType"]
                await self._audio(conn, base64.b64decode(audio["data"]))
        elif "clientContent" in message:
            content = message["clientContent"]
            for turn in content.get("turns") or []:
                text = "".join(p.get("text", "") for p in turn.get("parts") or [])
                conn.history.append({"role": turn["role"], "text": text})
            if content.get("turnComplete"):
                self._start(conn)
        elif "toolResponse" in message and conn.tool_wait is not None and not conn.tool_wait.done():
            conn.tool_wait.set_result(message["toolResponse"]["functionResponses"])

    async def _audio(self, conn: _Conn, pcm: bytes) -> None:
        n = len(pcm) // 2
        ms = n * 1000 // IN_RATE
        loud = n and max(abs(s) for s in struct.unpack(f"<{n}h", pcm)) > 1000
        if loud:
            conn.quiet_ms = 0
            if not conn.speaking:
                conn.speaking = True
                if conn.turn is not None and not conn.turn.done():
                    waiting = conn.tool_wait is not None and not conn.tool_wait.done()
                    conn.turn.cancel()  # (and the tool_wait it awaits)
                    await self._send(conn, {"serverContent": {"interrupted": True}})
                    if waiting:  # the calls the turn waited on are void
                        await self._send(conn, {"toolCallCancellation": {"ids": [conn.tool_id]}})
        elif conn.speaking:
            conn.quiet_ms += ms
            if conn.quiet_ms >= self.silence_ms:
                conn.speaking = False
                text = self.transcripts.popleft() if self.transcripts else "hello"
                conn.history.append({"role": "user", "text": text})
                for word in text.split(" "):
                    await self._send(conn, {"serverContent": {"inputTranscription": {"text": " " + word}}})
                self._start(conn)

    def _start(self, conn: _Conn) -> None:
        conn.turn = asyncio.get_running_loop().create_task(self._model_turn(conn))

    async def _model_turn(self, conn: _Conn) -> None:
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.tool is not None:
            name, args = reply.tool
            self._n += 1
            call = {"id": f"function-call-{self._n}", "name": name, "args": json.loads(args)}
            conn.tool_wait, conn.tool_id = asyncio.get_running_loop().create_future(), call["id"]
            await self._send(conn, {"toolCall": {"functionCalls": [call]}})
            responses = await conn.tool_wait
            assert responses[0]["id"] == call["id"], responses
            conn.history.append({"role": "tool", "text": json.dumps(responses[0]["response"])})
            reply = self.replies.popleft() if self.replies else Reply()
        audio = tone(reply.audio_ms, OUT_RATE)
        chunk = OUT_RATE * 2 * reply.chunk_ms // 1000
        n = max(1, math.ceil(len(audio) / chunk))
        words = reply.text.split(" ")
        per = math.ceil(len(words) / n)
        for k in range(n):
            blob = {
                "mimeType": "audio/pcm;rate=24000",
                "data": base64.b64encode(audio[k * chunk : (k + 1) * chunk]).decode(),
            }
            await self._send(conn, {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}})
            part = " ".join(words[k * per : (k + 1) * per])
            if part:
                lead = " " if k else ""
                await self._send(conn, {"serverContent": {"outputTranscription": {"text": lead + part}}})
            if reply.pace_s:
                await asyncio.sleep(reply.pace_s)
        conn.history.append({"role": "model", "text": reply.text})
        await self._send(conn, {"serverContent": {"generationComplete": True}})
        details = [{"modality": "AUDIO", "tokenCount": 45}, {"modality": "TEXT", "tokenCount": 5}]
        usage = {
            "promptTokenCount": 120,
            "responseTokenCount": 50,
            "totalTokenCount": 170,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40}, {"modality": "AUDIO", "tokenCount": 80}],
            "responseTokensDetails": details,
        }
        await self._send(conn, {"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        conn.turns += 1
        if conn.resumable:
            self._n += 1
            handle = f"handle-{self._n}"
            self.handles[handle] = list(conn.history)
            await self._send(conn, {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
        if self.go_away_after is not None and conn.turns >= self.go_away_after:
            self.go_away_after = None
            await self._send(conn, {"goAway": {"timeLeft": f"{self.go_away_grace_s:g}s"}})
            asyncio.get_running_loop().call_later(self.go_away_grace_s, self._cut, conn)
        if self.drop_after is not None and conn.turns >= self.drop_after:
            self.drop_after = None
            self._cut(conn)

    def _cut(self, conn: _Conn) -> None:
        if not conn.ws.closed:
            self.cut_by_server += 1
            transport = conn.ws._req.transport if conn.ws._req is not None else None
            if transport is not None:
                transport.abort()
