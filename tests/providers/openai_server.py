"""A loopback server that speaks the OpenAI Chat Completions wire format, for tests.

``POST {base}/chat/completions`` is checked the way the real API checks it
(``Authorization: Bearer <key>``, a model, messages, ``tool`` messages that
answer an earlier tool call) and answered with the next scripted
:class:`Reply`: a recorded SSE stream (``tests/providers/recordings/openai/``),
an error body, or a plain JSON completion (a request without ``stream`` gets
the ``chat.completion`` built from the scripted stream, as the API would). Every request is recorded, and the
server notes when a client goes away mid-answer (``disconnected``).

    async with OpenAIServer() as server:
        server.push(Reply(stream=recording("text")))
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=server.api_key, compatible=False)

Fault knobs: ``status``/``body``/``headers`` (429 with Retry-After, 500, 401),
``first_byte_delay`` (slow first token), ``event_delay`` (pause after each
write), ``cut_after`` (drop the connection after N events), ``hang`` (keep the
stream open until the client leaves, sending keep-alive comments unless
``keepalive=False``), ``chunk_size`` (re-cut the bytes anywhere).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = [
    "API_KEY",
    "OpenAIServer",
    "Recorded",
    "Reply",
    "chunk",
    "completion_from_stream",
    "events",
    "recording",
    "sse_body",
]

API_KEY = "sk-test-loopback-0123456789abcdef"
RECORDINGS = Path(__file__).parent / "recordings" / "openai"


def recording(name: str) -> bytes:
    """The bytes of a recorded stream, exactly as they went over the wire."""
    return (RECORDINGS / f"{name}.sse").read_bytes()


def events(raw: bytes) -> list[bytes]:
    """Split a recorded stream into its SSE blocks (each ending with its blank line)."""
    out, start = [], 0
    while True:
        end = raw.find(b"\n\n", start)
        if end < 0:
            if start < len(raw):
                out.append(raw[start:])
            return out
        out.append(raw[start : end + 2])
        start = end + 2


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` object as OpenAI sends it with include_usage."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion.chunk",
        "created": 1732000000,
        "model": model,
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": choices,
        "usage": usage,
    }


def sse_body(chunks: Sequence[dict[str, Any] | str]) -> bytes:
    """``data: <json>\\n\\n`` per chunk (a str is sent verbatim as data), then ``data: [DONE]``."""
    parts = [b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n" for c in chunks]
    return b"".join([*parts, b"data: [DONE]\n\n"])


OK_STREAM = sse_body([chunk({"role": "assistant", "content": ""}), chunk({"content": "ok"}), chunk({}, "stop")])


@dataclass
class Reply:
    """One scripted answer (see the module docstring); by default a short "ok" stream."""

    status: int = 200
    stream: bytes | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None
    delay: float = 0.0
    first_byte_delay: float = 0.0
    event_delay: float = 0.0
    cut_after: int | None = None
    hang: bool = False
    keepalive: bool = True


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any
    peer: tuple[str, int] | None = None  # the client's address and port: one per TCP connection


class OpenAIServer:
    """An aiohttp server on 127.0.0.1 answering ``/v1/chat/completions`` from a script."""

    def __init__(self, api_key: str = API_KEY, *, check_auth: bool = True) -> None:
        self.api_key = api_key
        self.check_auth = check_auth
        self.replies: deque[Reply] = deque(maxlen=100)
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.completed = 0  # streams sent to the end
        self.active = 0  # handlers running now
        self.max_active = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def __aenter__(self) -> OpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.requests.append(Recorded(request.path, dict(request.headers), body, tuple(peer) if peer else None))
        if self.check_auth and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(
                401,
                "Incorrect API key provided: sk-test-****. You can find your API key at ...",
                "invalid_request_error",
                "invalid_api_key",
            )
        problem = _check(body)
        if problem:
            return _error(400, problem, "invalid_request_error", None)
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status == 200 and reply.body is None and not body.get("stream"):
            reply = Reply(body=completion_from_stream(reply.stream if reply.stream is not None else OK_STREAM))
        if reply.status != 200 or reply.body is not None:
            text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            return web.Response(status=reply.status, text=text, content_type="application/json", headers=reply.headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", **reply.headers})
        await response.prepare(request)
        try:
            if reply.first_byte_delay:
                await asyncio.sleep(reply.first_byte_delay)
            raw = reply.stream if reply.stream is not None else OK_STREAM
            blocks = events(raw)
            if reply.cut_after is not None:
                raw = b"".join(blocks[: reply.cut_after])
            pieces = (
                [raw[i : i + reply.chunk_size] for i in range(0, len(raw), reply.chunk_size)]
                if reply.chunk_size
                else (blocks[: reply.cut_after] if reply.cut_after is not None else blocks)
            )
            for piece in pieces:
                await response.write(piece)
                if reply.event_delay:
                    await asyncio.sleep(reply.event_delay)
            if reply.cut_after is not None:
                # Drop the connection without the chunked-encoding terminator.
                assert request.transport is not None
                request.transport.abort()
                return response
            while reply.hang:
                await asyncio.sleep(0.02)
                if reply.keepalive:
                    await response.write(b": keep-alive\n\n")
            await response.write_eof()
            self.completed += 1
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        return response


def completion_from_stream(raw: bytes) -> dict[str, Any]:
    """The ``chat.completion`` object the API returns for the same answer without streaming."""
    text, calls, finish, usage, model = [], {}, None, None, "gpt-4o-mini-2024-07-18"
    for block in events(raw):
        data = block.decode().strip().removeprefix("data: ")
        if not data or data.startswith(":") or data == "[DONE]":
            continue
        c = json.loads(data)
        model = c.get("model", model)
        usage = c.get("usage") or usage
        for choice in c.get("choices") or ():
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                entry = calls.setdefault(
                    tc["index"], {"id": tc.get("id"), "type": "function", "function": {"name": None, "arguments": ""}}
                )
                entry["id"] = entry["id"] or tc.get("id")
                entry["function"]["name"] = entry["function"]["name"] or tc.get("function", {}).get("name")
                entry["function"]["arguments"] += tc.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None, "refusal": None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1732000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def _error(status: int, message: str, kind: str, code: str | None) -> web.Response:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(payload, status=status)


def _check(body: Any) -> str | None:
    """The checks the real API makes that a client can get wrong."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not body.get("model"):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    seen_calls: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value for 'messages[{i}].role': {role!r}"
        for call in m.get("tool_calls") or ():
            if call.get("type") != "function" or not isinstance(call["function"].get("arguments"), str):
                return f"Invalid 'messages[{i}].tool_calls'"
            seen_calls.add(call["id"])
        if role == "tool" and m.get("tool_call_id") not in seen_calls:
            return f"Invalid parameter: messages with role 'tool' must be a response to a preceding 'tool_calls' ({i})"
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            problem = _check_part(part, f"messages[{i}].content[{j}]")
            if problem is not None:
                return problem
    if body.get("stream_options") and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    return _check_response_format(body.get("response_format"))


_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _check_response_format(fmt: Any) -> str | None:
    """Structured outputs: ``json_schema`` with ``{"name", "schema", "strict"?}``, or ``text``/``json_object``."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        return "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'."
    if fmt["type"] != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        return "Missing required parameter: 'response_format.json_schema'."
    if not isinstance(spec.get("name"), str) or not _SCHEMA_NAME.match(spec["name"]):
        return "Invalid 'response_format.json_schema.name': must match '^[a-zA-Z0-9_-]{1,64}$'."
    if not isinstance(spec.get("schema", {}), dict):
        return "Invalid 'response_format.json_schema.schema': expected an object."
    unknown = set(spec) - {"name", "schema", "strict", "description"}
    if unknown:
        return f"Unknown parameter: 'response_format.json_schema.{sorted(unknown)[0]}'."
    if spec.get("strict") is True:
        return _check_strict(spec["name"], spec.get("schema", {}), ())
    return None


def _check_strict(name: str, schema: Any, context: tuple[str, ...]) -> str | None:
    """Strict structured outputs: every object closed, every property required, the root an object (OpenAI's rules)."""
    where = f"Invalid schema for response_format '{name}': In context=({', '.join(repr(c) for c in context)}), "
    if not isinstance(schema, dict):
        return where + "schema must be a JSON Schema object."
    if not context and schema.get("type") != "object":
        return where + "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'."
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties", {})
        missing = [k for k in properties if k not in schema.get("required", [])]
        if missing:
            return (
                where + "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
    subs: list[tuple[tuple[str, ...], Any]] = []
    subs += [((*context, "properties", k), v) for k, v in schema.get("properties", {}).items()]
    subs += [((*context, "$defs", k), v) for k, v in schema.get("$defs", {}).items()]
    subs += [((*context, "anyOf", str(i)), v) for i, v in enumerate(schema.get("anyOf", []))]
    if isinstance(schema.get("items"), dict):
        subs.append(((*context, "items"), schema["items"]))
    for path, sub in subs:
        problem = _check_strict(name, sub, path)
        if problem is not None:
            return problem
    return None


def _check_part(part: dict[str, Any], where: str) -> str | None:
    """A user content part as Chat Completions takes it: text, image_url, input_audio or file."""
    kind = part.get("type")
    if kind == "text":
        return None if isinstance(part.get("text"), str) else f"Missing required parameter: '{where}.text'."
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if not (url.startswith(("http://", "https://")) or url.startswith("data:image/")):
            return f"Invalid '{where}.image_url.url': expected a URL or a base64 data URL of an image."
        return None
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        if audio.get("format") not in ("wav", "mp3") or not audio.get("data"):
            return f"Invalid '{where}.input_audio': base64 data and a format of 'wav' or 'mp3' are required."
        return None
    if kind == "file":
        file = part.get("file") or {}
        if file.get("file_id"):
            return None
        if not str(file.get("file_data", "")).startswith("data:") or not file.get("filename"):
            return f"Invalid '{where}.file': file_data (a base64 data URL) with a filename, or a file_id, is required."
        return None
    return f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', 'input_audio', and 'file'."
