"""A loopback WebSocket server that replays a recorded duplex session (tests/duplex/recordings/*.jsonl).

A recording is JSON lines: a header (``recording``: what it covers,
``shapes``: where its event shapes come from), then per connection a
``connect`` line (the path the client must open) followed by steps:

* ``{"send": EVENT}``: the server sends EVENT (one WebSocket text message);
* ``{"expect": SHAPE}``: the next client message that is not audio must
  match SHAPE (every key given, recursively; lists element by element); a
  mismatch is recorded in :attr:`ReplayServer.mismatches`;
* ``{"audio_in": N}``: wait until the client has sent N audio messages on
  this connection (the script keeps pace with the microphone);
* ``{"drop": true}``: cut the socket without a close frame.

When a connection's steps run out the server waits for the client to close;
its non-audio messages after that are :attr:`ReplayServer.unexpected`.
Audio messages (``input_audio_buffer.append``, ``realtimeInput.audio``) are
counted and checked for base64 PCM16, not matched one by one.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["RECORDINGS", "ReplayServer", "matches"]

RECORDINGS = Path(__file__).parent / "recordings"


def matches(shape: Any, value: Any) -> bool:
    """True when ``value`` has every key of ``shape`` with a matching value (lists: same length, each matching).

    >>> matches({"type": "a", "x": {"y": 1}}, {"type": "a", "x": {"y": 1, "z": 2}, "w": 3})
    True
    >>> matches({"x": [1]}, {"x": [1, 2]})
    False
    """
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(k in value and matches(v, value[k]) for k, v in shape.items())
    if isinstance(shape, list):
        return isinstance(value, list) and len(shape) == len(value) and all(map(matches, shape, value))
    return bool(shape == value)


def _audio(message: dict[str, Any]) -> str | None:
    if message.get("type") == "input_audio_buffer.append":
        return str(message["audio"])
    audio = (message.get("realtimeInput") or {}).get("audio")
    return None if audio is None else str(audio["data"])


class ReplayServer:
    """``async with ReplayServer("openai_realtime_conversation.jsonl") as server``: ``server.url`` is the base URL."""

    def __init__(self, name: str) -> None:
        lines = [json.loads(line) for line in (RECORDINGS / name).read_text().splitlines() if line.strip()]
        self.header = lines[0]
        if "recording" not in self.header or "shapes" not in self.header:
            raise ValueError(
                f"{name}: the first line must say what the recording covers and where its shapes come from"
            )
        self.scripts: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for line in lines[1:]:
            if "connect" in line:
                self.scripts.append((line["connect"], []))
            else:
                self.scripts[-1][1].append(line)
        self.received: list[dict[str, Any]] = []
        self.mismatches: list[str] = []
        self.unexpected: list[dict[str, Any]] = []
        self.audio_in: list[int] = []  # audio messages per connection
        self.connections = 0
        self.finished = 0  # connections whose script ran to its end
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ReplayServer:
        app = web.Application()
        for path in {connect["path"] for connect, _ in self.scripts}:
            app.router.add_get(path, self._handle)
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
        index = self.connections
        self.connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if index >= len(self.scripts):
            self.mismatches.append(f"connection {index + 1} was not recorded")
            await ws.close()
            return ws
        connect, steps = self.scripts[index]
        if request.path != connect["path"] or any(
            request.query.get(k) != v for k, v in connect.get("query", {}).items()
        ):
            self.mismatches.append(f"connection {index + 1}: {request.path_qs} is not {connect}")
        self.audio_in.append(0)
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        audio = asyncio.Event()
        reader = asyncio.get_running_loop().create_task(self._read(ws, index, inbox, audio))
        try:
            for step in steps:
                if "send" in step:
                    await ws.send_str(json.dumps(step["send"]))
                elif "expect" in step:
                    message = await inbox.get()
                    if message is None:
                        self.mismatches.append(f"connection {index + 1}: closed while expecting {step['expect']}")
                        return ws
                    if not matches(step["expect"], message):
                        self.mismatches.append(f"connection {index + 1}: expected {step['expect']}, got {message}")
                elif "audio_in" in step:
                    while self.audio_in[index] < step["audio_in"]:
                        audio.clear()
                        await audio.wait()
                elif step.get("drop"):
                    self.finished += 1  # the last step of its script
                    if ws._req is not None and ws._req.transport is not None:
                        ws._req.transport.abort()
                    return ws
            self.finished += 1
            while (message := await inbox.get()) is not None:
                self.unexpected.append(message)
        finally:
            reader.cancel()
        return ws

    async def _read(
        self, ws: web.WebSocketResponse, index: int, inbox: asyncio.Queue[dict[str, Any] | None], audio: asyncio.Event
    ) -> None:
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                self.received.append(message)
                data = _audio(message)
                if data is None:
                    inbox.put_nowait(message)
                    continue
                if len(base64.b64decode(data, validate=True)) % 2:
                    self.mismatches.append(f"connection {index + 1}: audio of odd length (not PCM16)")
                self.audio_in[index] += 1
                audio.set()
        finally:
            inbox.put_nowait(None)
