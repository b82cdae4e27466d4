"""A loopback Anthropic Messages API server for tests, driven by recorded streams.

It speaks the documented wire format: ``POST /v1/messages`` checked the way
the real API checks it (``x-api-key``, ``anthropic-version``, ``max_tokens``,
roles, ``tool_result`` ids), errors as ``{"type": "error", "error": {...}}``
and streams as ``event:`` / ``data:`` SSE blocks. Each request takes the next
scripted :class:`Reply`; every request is recorded.

:class:`ScriptedServer` is the API-neutral core, reused by ``gemini_server``.

    async with AnthropicServer() as server:
        server.push(Reply(events=TEXT_STREAM))
        ...  # point a provider at server.url with api_key=server.api_key
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

__all__ = [
    "MULTI_TOOL_STREAM",
    "THINKING_REFUSAL",
    "TEXT_STREAM",
    "AnthropicServer",
    "Recorded",
    "Reply",
    "ScriptedServer",
    "events_of",
    "sign",
    "sse",
    "thinking_stream",
    "tool_stream",
]


@dataclass
class Reply:
    """One scripted answer.

    ``events`` are complete SSE blocks sent in order (as one byte stream cut
    into ``chunk_size`` pieces when set, else one write per event, ``delay``
    seconds apart). ``body`` (a dict is sent as JSON) makes a plain reply.
    ``cut_after`` drops the connection after that many events; ``hang``
    keeps it open, sending nothing, until the client leaves.
    """

    status: int = 200
    events: Sequence[str] = ()
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None
    delay: float = 0.0
    first_byte_delay: float = 0.0
    cut_after: int | None = None
    hang: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    """An aiohttp server on 127.0.0.1 that answers each request with the next :class:`Reply`."""

    content_type = "text/event-stream"

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque(maxlen=100)
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.completed = 0
        self._runner: web.AppRunner | None = None
        self._left: asyncio.Event | None = None
        self.port = 0

    # -- to override
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def validate(self, request: web.Request, body: Any) -> web.Response | None:
        return None

    def no_reply(self) -> web.Response:
        return web.json_response({"error": "no scripted reply left"}, status=500)

    def streaming(self, request: web.Request, body: Any) -> bool:
        """Whether the client asked for a stream (a scripted stream answers only those)."""
        return True

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        self._left = asyncio.Event()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def client_left(self, timeout: float = 5.0) -> None:
        """Wait until a client dropped a stream before it ended."""
        assert self._left is not None
        await asyncio.wait_for(self._left.wait(), timeout)

    # -- serving
    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), body))
        problem = self.validate(request, body)
        if problem is not None:
            return problem
        if not self.replies:
            return self.no_reply()
        reply = self.replies.popleft()
        if reply.body is not None or (not reply.events and not reply.hang):
            await asyncio.sleep(reply.first_byte_delay)
            if isinstance(reply.body, (dict, list)):
                return web.json_response(reply.body, status=reply.status, headers=reply.headers)
            return web.Response(body=reply.body or b"", status=reply.status, headers=reply.headers)
        if not self.streaming(request, body):
            return web.json_response({"error": "a stream was scripted for a non-streaming request"}, status=500)
        return await self._stream(request, reply)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers={"Cache-Control": "no-cache", **reply.headers})
        response.content_type = self.content_type
        await response.prepare(request)
        events = list(reply.events) if reply.cut_after is None else list(reply.events)[: reply.cut_after]
        writes = _pieces(events, reply.chunk_size)
        try:
            if reply.first_byte_delay:
                await asyncio.sleep(reply.first_byte_delay)
            for i, piece in enumerate(writes):
                if i and reply.delay:
                    await asyncio.sleep(reply.delay)
                await response.write(piece)
            if reply.cut_after is not None:
                assert request.transport is not None
                request.transport.abort()  # a dropped connection, not a clean end of stream
                return response
            while reply.hang:
                await asyncio.sleep(0.02)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
            await response.write_eof()
            self.completed += 1
        except (ConnectionResetError, ConnectionError):
            self.disconnects += 1
            if self._left is not None:
                self._left.set()
        return response


def _pieces(events: list[str], chunk_size: int | None) -> list[bytes]:
    if chunk_size is None:
        return [e.encode() for e in events]
    data = "".join(events).encode()  # may cut inside a UTF-8 sequence: the client must cope
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


# ---------------------------------------------------------------- Anthropic


def sse(event: str, data: Any) -> str:
    """One SSE block the way the Messages API writes it."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n"


def events_of(recording: str) -> list[str]:
    """Split a recorded stream into its SSE blocks."""
    return [block + "\n\n" for block in recording.strip("\n").split("\n\n")]


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_loopback"}
    return web.json_response(body, status=status, headers=headers)


class AnthropicServer(ScriptedServer):
    """``POST /v1/messages`` as the Anthropic API serves it."""

    api_key = "sk-ant-api03-loopback-test-key-000000000000"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.handle)]

    def no_reply(self) -> web.Response:
        return _error(500, "api_error", "no scripted reply left")

    def streaming(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def validate(self, request: web.Request, body: Any) -> web.Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if request.content_type != "application/json" or not isinstance(body, dict):
            return _error(400, "invalid_request_error", "body must be a JSON object")
        problem = check_messages_body(body) or check_thinking(body)
        return None if problem is None else _error(400, "invalid_request_error", problem)


_BLOCK_TYPES = {"text", "image", "tool_use", "tool_result", "document", "thinking", "redacted_thinking"}


def check_messages_body(body: dict[str, Any]) -> str | None:
    """What the real API would reject in ``body``, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if "system" in body and not isinstance(body["system"], (str, list)):
        return "system: Input should be a valid string or list"
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and messages[i - 1].get("role") == role:
            return f"messages.{i}: roles must alternate between user and assistant"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        answered = {b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"}
        if previous_tool_ids - answered:
            unanswered = ", ".join(sorted(previous_tool_ids - answered))
            return (
                f"messages.{i}: tool_use ids were found without tool_result blocks immediately after: {unanswered}. "
                "Each tool_use block must have a corresponding tool_result block in the next message."
            )
        tool_ids: set[str] = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind not in _BLOCK_TYPES:
                return f"messages.{i}.content.{j}.type: unknown block type {kind!r}"
            if kind == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
            if kind == "tool_use":
                if role != "assistant" or not isinstance(block.get("input"), dict):
                    return f"messages.{i}.content.{j}: tool_use needs an assistant turn and an object input"
                tool_ids.add(block["id"])
            if kind == "tool_result" and block.get("tool_use_id") not in previous_tool_ids:
                return f"messages.{i}.content.{j}: unexpected tool_use_id found in tool_result blocks"
            if kind in ("image", "document"):
                problem = _check_source(kind, block.get("source") or {}, f"messages.{i}.content.{j}.source")
                if problem is not None:
                    return problem
        previous_tool_ids = tool_ids
    if previous_tool_ids:
        return "messages: the conversation ends with tool_use blocks that have no tool_result after them"
    for tool in body.get("tools") or ():
        if not isinstance(tool.get("input_schema"), dict) or not tool.get("name"):
            return "tools: each tool needs a name and an input_schema"
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) and choice.get("type") == "tool"
    if forced and choice.get("name") not in {t.get("name") for t in body.get("tools") or ()}:
        return "tool_choice.name: the forced tool must be one of tools"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    for name in ("response_format", "output_format", "seed"):
        if name in body:
            return f"{name}: Extra inputs are not permitted"
    config = body.get("output_config")
    if config is not None:
        fmt = config.get("format") if isinstance(config, dict) else None
        if fmt is not None and (fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)):
            return "output_config.format: expected {'type': 'json_schema', 'schema': {...}}"
    return None


THINKING_REFUSAL = (
    "Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final "
    "`assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and "
    "`tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this "
    "requirement, disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def sign(thinking: str) -> str:
    """The loopback server's signature of a thinking block (the real API's is opaque; this one is checkable)."""
    return "EqQBCkgIARABGAIiQ" + base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def check_thinking(body: dict[str, Any]) -> str | None:
    """Extended thinking's rules, as the API enforces them: the budget fits in ``max_tokens``; thinking
    blocks come back unaltered (their signature matches); and with thinking on, an assistant turn
    whose tool calls are being answered starts with its thinking block."""
    thinking = body.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    if enabled and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if body["max_tokens"] <= budget:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    messages = body["messages"]
    for i, message in enumerate(messages):
        content = message["content"]
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if block.get("type") == "thinking" and block.get("signature") != sign(block.get("thinking", "")):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if block.get("type") == "redacted_thinking" and not block.get("data"):
                return f"messages.{i}.content.{j}.data: Field required"
    if not enabled or len(messages) < 2:
        return None
    last = messages[-1]["content"]
    in_tool_loop = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    assistant = messages[-2]
    if in_tool_loop and assistant["role"] == "assistant" and isinstance(assistant["content"], list):
        first = assistant["content"][0].get("type")
        if first not in ("thinking", "redacted_thinking"):
            return f"messages.{len(messages) - 2}.content.0.type: " + THINKING_REFUSAL.format(found=first)
    return None


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _check_source(kind: str, source: dict[str, Any], where: str) -> str | None:
    """An image or document source as the API takes it (base64 with a media type, a URL, or plain text)."""
    stype = source.get("type")
    if stype == "url":
        return None if str(source.get("url", "")).startswith(("http://", "https://")) else f"{where}.url: invalid URL"
    if stype == "base64":
        allowed = _IMAGE_TYPES if kind == "image" else ("application/pdf",)
        if source.get("media_type") not in allowed:
            return f"{where}.media_type: Input should be {' or '.join(repr(a) for a in allowed)}"
        data = source.get("data")
        if not isinstance(data, str) or not data:
            return f"{where}.data: Field required"
        if kind == "image" and len(data) > 5 * 1024 * 1024:
            return f"{where}: image exceeds 5 MB maximum: {len(data)} bytes > 5242880 bytes"
        return None
    if stype == "text" and kind == "document":
        return None if source.get("media_type") == "text/plain" else f"{where}.media_type: Input should be 'text/plain'"
    return f"{where}.type: Input tag {stype!r} found using 'type' does not match any of the expected tags"


# ---------------------------------------------------------------- recordings

TEXT_STREAM = events_of(
    """event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The capital"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" of France is"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Paris — « Paris » 🇫🇷."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501 - recorded wire data
)
TEXT_STREAM_TEXT = "The capital of France is Paris — « Paris » 🇫🇷."


def tool_stream(
    text: str,
    calls: Sequence[tuple[str, str, str]],
    *,
    pieces: int = 7,
    input_tokens: int = 412,
    cache_creation: int = 0,
    cache_read: int = 0,
    output_tokens: int = 96,
    ping_every: int = 3,
) -> list[str]:
    """A tool-use turn: optional text, then each ``(id, name, arguments_json)``
    as a ``tool_use`` block whose JSON arrives in ``pieces`` fragments (after
    the empty first fragment the API sends), with pings interleaved."""
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": 2,
    }
    out = [
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-haiku-4-5-20251001",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        )
    ]
    index = 0
    if text:
        out.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        for k in range(0, len(text), 5):
            delta = {"type": "text_delta", "text": text[k : k + 5]}
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    sent = 0
    for call_id, name, arguments in calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        out.append(sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        step = max(1, -(-len(arguments) // pieces))
        fragments = [""] + [arguments[k : k + step] for k in range(0, len(arguments), step)]
        for fragment in fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            sent += 1
            if ping_every and sent % ping_every == 0:
                out.append(sse("ping", {"type": "ping"}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    final = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}}
    final["usage"] = {"output_tokens": output_tokens}
    out.append(sse("message_delta", final))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


MULTI_TOOL_CALLS = [
    ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"location": "San Francisco, CA", "unit": "celsius"}'),
    ("toolu_01Xb4ZTXA1mtH1FYAsLRZr2w", "get_time", '{"timezone": "America/Los_Angeles", "format": "24h"}'),
    ("toolu_01Bh8RzZ6S5AQyC1yxUukVNm", "lookup", '{"query": "Zürich 🏔", "limit": 3, "tags": ["a", "b"]}'),
]
MULTI_TOOL_STREAM = tool_stream(
    "Let me check those for you.", MULTI_TOOL_CALLS, input_tokens=40, cache_creation=120, cache_read=1800
)


def thinking_stream(
    thinking: str,
    text: str = "",
    calls: Sequence[tuple[str, str, str]] = (),
    *,
    redacted: str | None = None,
    output_tokens: int = 180,
) -> list[str]:
    """An extended-thinking turn as the API streams it: a ``thinking`` block (``thinking_delta`` pieces,
    then one ``signature_delta`` just before ``content_block_stop``), an optional ``redacted_thinking``
    block (whole, in ``content_block_start``), then text and ``tool_use`` blocks."""
    message = {
        "id": "msg_01ThinkingLoopback000000",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 96,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 4,
        },
    }
    out = [sse("message_start", {"type": "message_start", "message": message})]

    def block(index: int, start: dict[str, Any], deltas: Sequence[dict[str, Any]]) -> None:
        out.append(sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        for delta in deltas:
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))

    pieces = [thinking[k : k + 12] for k in range(0, len(thinking), 12)]
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
    block(
        0,
        {"type": "thinking", "thinking": "", "signature": ""},
        [*deltas, {"type": "signature_delta", "signature": sign(thinking)}],
    )
    index = 1
    if redacted is not None:
        block(index, {"type": "redacted_thinking", "data": redacted}, ())
        index += 1
    if text:
        block(
            index,
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": text[k : k + 6]} for k in range(0, len(text), 6)],
        )
        index += 1
    for call_id, name, arguments in calls:
        start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        block(index, start, [{"type": "input_json_delta", "partial_json": arguments}])
        index += 1
    stop = "tool_use" if calls else "end_turn"
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    out.append(sse("message_delta", final))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out
