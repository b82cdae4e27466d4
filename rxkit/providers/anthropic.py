"""Anthropic Messages API provider (``POST /v1/messages`` with ``"stream": true``).

Two pure halves, usable and tested on their own:

* :func:`build_request` turns rxkit messages into the Messages API body: the
  system prompt goes to its own top-level field, ``tool`` messages become
  ``tool_result`` blocks in a user turn, and consecutive messages of the same
  role are merged so that roles alternate.
* :func:`apply_event` applies one stream event (``message_start``,
  ``content_block_start/delta/stop``, ``message_delta``, ``message_stop``,
  ``ping``, ``error``) to the call's
  :class:`~rxkit.providers._hot.StreamAccumulator`, which emits
  :class:`~rxkit.elements.TextDelta` as text arrives,
  :class:`~rxkit.elements.ToolCallDelta` as a tool's ``input_json_delta`` arrives, and
  :class:`~rxkit.elements.ToolCallElement` when a ``tool_use`` block closes.

:class:`AnthropicProvider` (type ``"anthropic"``, key from ``ANTHROPIC_API_KEY``, base URL
from ``ANTHROPIC_BASE_URL`` when none is given, as the official SDK reads it)
plugs both into the shared HTTP machinery (:mod:`rxkit.providers.http`):
retries, timeouts, hot streams, events and cost.

>>> body = build_request([Message.system("Be brief."), Message.user("Hi")], {"model": "claude-haiku-4-5"})
>>> body["system"], body["messages"]
('Be brief.', [{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}])

Prompt caching: ``cache_read_input_tokens`` become
``Usage.cached_input_tokens`` and ``cache_creation_input_tokens``
``Usage.cache_write_tokens`` (priced at their own rates); ``Usage.input_tokens``
counts every input token (uncached + cache writes + cache reads). Pass ``prompt_cache=True`` (in
the provider's defaults or ``request.extra``) to mark the system prompt and
the tool list with ``cache_control``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from orjson import loads as _loads

from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    ContentBlockedError,
    ProviderError,
    ProviderHTTPError,
    ProviderServerError,
    RateLimitError,
    ToolArgumentsError,
)
from rxkit.providers.base import Capabilities
from rxkit.providers.http import HTTPProvider, HTTPRequest, SSEEvent, StreamAccumulator
from rxkit.providers.media import check_media
from rxkit.providers.registry import register_provider
from rxkit.toolformats import to_anthropic
from rxkit.types import (
    AudioPart,
    ChatRequest,
    DocumentPart,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolDescriptor,
    ToolResultPart,
    VideoPart,
)

__all__ = ["API_VERSION", "AnthropicProvider", "apply_event", "apply_message", "build_request", "error_from_body"]

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent with every request."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` is required by the API; this is used when nothing sets it."""

# rxkit parameter -> Messages API field. Parameters not listed here and not
# handled below are passed through to the body unchanged (top_k, thinking, ...).
_RENAMED = {"stop": "stop_sequences"}
_DROPPED = {"seed", "response_format", "stream", "messages", "prompt_cache", "reasoning", "max_tokens"}
REASONING_BUDGETS = {"low": 2048, "medium": 8192, "high": 24576}
"""``reasoning="low"|"medium"|"high"`` as an extended-thinking ``budget_tokens`` (an int is taken as the budget)."""
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


# ---------------------------------------------------------------- request


def build_request(
    messages: Sequence[Message],
    params: dict[str, Any],
    tools: Sequence[ToolDescriptor] = (),
    *,
    stream: bool = True,
) -> dict[str, Any]:
    """The JSON body for ``POST /v1/messages``.

    ``params`` are merged rxkit parameters (``model``, ``max_tokens``,
    ``temperature``, ``top_p``, ``stop``, ``tool_choice``, plus any
    Anthropic-specific field, passed through). ``seed`` has no Messages API
    equivalent and is dropped, as is ``response_format`` ``json_object`` (no
    schema-less JSON mode); a ``json_schema`` format is sent as
    ``output_config.format`` (structured outputs). ``reasoning`` (an effort
    name or a token budget) turns on extended thinking: ``thinking:
    {"type": "enabled", "budget_tokens": N}`` (see :data:`REASONING_BUDGETS`),
    and ``max_tokens`` grows past the budget unless it was set.

    >>> build_request([Message.user("Hi")], {"model": "m", "reasoning": 2000})["thinking"]
    {'type': 'enabled', 'budget_tokens': 2000}
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.text:
                system.append(message.text)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [_block(part) for part in message.content]
        blocks = [b for b in blocks if b is not None]
        if not blocks:
            continue  # the API rejects empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # merge so that roles alternate
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # tool results must lead their user turn
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")

    body: dict[str, Any] = {"model": params.get("model"), "max_tokens": params.get("max_tokens") or DEFAULT_MAX_TOKENS}
    cache = bool(params.get("prompt_cache"))
    if system:
        text = "\n\n".join(system)
        body["system"] = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}] if cache else text
    body["messages"] = turns
    if tools:
        body["tools"] = to_anthropic(tools)
        if cache:
            body["tools"][-1]["cache_control"] = {"type": "ephemeral"}
    for key, value in params.items():
        if value is None or key in _DROPPED or key == "model":
            continue
        if key == "tool_choice":
            if tools or not isinstance(value, str):
                body["tool_choice"] = _tool_choice(value)
            continue
        body[_RENAMED.get(key, key)] = value
    _thinking(body, params)
    output_format = _output_format(params.get("response_format"))
    if output_format is not None:
        body["output_config"] = {**(body.get("output_config") or {}), "format": output_format}
    if stream:
        body["stream"] = True
    return body


def _thinking(body: dict[str, Any], params: dict[str, Any]) -> None:
    """Extended thinking from ``reasoning`` (or a ``thinking`` given as is), with room for it in ``max_tokens``."""
    effort = params.get("reasoning")
    if effort is not None and "thinking" not in params:
        budget = REASONING_BUDGETS.get(effort) if isinstance(effort, str) else effort
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            raise ConfigError(
                f"anthropic: reasoning={effort!r}: give one of {', '.join(REASONING_BUDGETS)} or a budget in tokens "
                "(at least 1024, the API's minimum)"
            )
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and body["max_tokens"] <= budget:
        if params.get("max_tokens") is not None:
            raise ConfigError(
                f"anthropic: max_tokens ({params['max_tokens']}) must be greater than the thinking budget ({budget})"
            )
        body["max_tokens"] = budget + DEFAULT_MAX_TOKENS


def _output_format(fmt: Any) -> dict[str, Any] | None:
    """A ``json_schema`` response format as the Messages API's ``output_config.format`` (structured outputs)."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema", fmt)
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ConfigError("anthropic: response_format json_schema needs a 'schema' object")
    return {"type": "json_schema", "schema": schema}


def _block(part: Any) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ReasoningPart):
        # Only Anthropic's own signed blocks can go back; unsigned or foreign reasoning is left out.
        if part.source != "anthropic":
            return None
        if part.data is not None:
            return {"type": "redacted_thinking", "data": part.data}
        if part.signature is None:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": _image_source(part)}
    if isinstance(part, DocumentPart):
        return {"type": "document", "source": _document_source(part)}
    if isinstance(part, ToolCallPart):
        call = part.call
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            raise ToolArgumentsError(
                f"tool call {call.id!r} ({call.name}) has arguments that are not JSON: {call.arguments[:200]!r}",
                tool=call.name,
            ) from None
        return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}
    if isinstance(part, ToolResultPart):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id, "content": part.content}
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, AudioPart):
        raise ConfigError("the Anthropic Messages API does not accept audio input; transcribe it first")
    if isinstance(part, VideoPart):
        raise ConfigError("the Anthropic Messages API does not accept video input")
    raise ConfigError(f"cannot send content part {type(part).__name__} to the Anthropic Messages API")


def _image_source(part: ImagePart) -> dict[str, Any]:
    if part.data is not None:
        return {"type": "base64", "media_type": part.mime_type, "data": part.data}
    url = part.url or ""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or part.mime_type
        return {"type": "base64", "media_type": media_type, "data": data}
    if not url:
        raise ConfigError("an image part needs either url or data")
    return {"type": "url", "url": url}


def _document_source(part: DocumentPart) -> dict[str, Any]:
    if part.mime_type not in ("application/pdf", "text/plain"):
        raise ConfigError(f"the Anthropic Messages API takes PDF and plain-text documents, not {part.mime_type!r}")
    if part.data is not None:
        if part.mime_type == "text/plain":  # a plain-text document goes as text, not base64
            return {"type": "text", "media_type": "text/plain", "data": base64.b64decode(part.data).decode()}
        return {"type": "base64", "media_type": part.mime_type, "data": part.data}
    url = part.url or ""
    if url.startswith("data:"):
        return {"type": "base64", "media_type": part.mime_type, "data": url.partition(",")[2]}
    if not url:
        raise ConfigError("a document part needs either url or data")
    return {"type": "url", "url": url}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        return choice
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": str(choice)}


# ---------------------------------------------------------------- errors

_ERROR_TYPES: dict[str, tuple[type[ProviderError], int]] = {
    "invalid_request_error": (ProviderHTTPError, 400),
    "authentication_error": (AuthenticationError, 401),
    "permission_error": (AuthenticationError, 403),
    "not_found_error": (ProviderHTTPError, 404),
    "request_too_large": (ProviderHTTPError, 413),
    "rate_limit_error": (RateLimitError, 429),
    "api_error": (ProviderServerError, 500),
    "overloaded_error": (ProviderServerError, 529),
}


def error_from_body(provider: str, body: Any, status: int | None = None, partial: str = "") -> ProviderError:
    """The rxkit error for an Anthropic error body ``{"type": "error", "error": {...}}``.

    Used for HTTP error responses and for ``event: error`` mid-stream (where
    ``status`` is None and ``partial`` keeps the text received so far).
    """
    error = body.get("error") if isinstance(body, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    text = str(error.get("message", "")) if isinstance(error, dict) else str(body)[:500]
    cls, code = _ERROR_TYPES.get(kind, (ProviderServerError if (status or 500) >= 500 else ProviderHTTPError, 0))
    status = status or code
    where = f"HTTP {status}" if status else "stream error"
    return cls(f"{provider}: {where} {kind or 'error'}: {text}", provider=provider, status=status, partial=partial)


# ---------------------------------------------------------------- stream


def apply_event(acc: StreamAccumulator, p: dict[str, Any]) -> bool:
    """Apply one parsed stream event to ``acc``; True after ``message_stop``.

    Raises a typed :class:`~rxkit.errors.ProviderError` for an ``error``
    event or a refusal; a missing field raises KeyError/TypeError, which the
    caller reports as a malformed event.
    """
    kind = p["type"]
    if kind == "content_block_delta":
        delta = p["delta"]
        dtype = delta["type"]
        if dtype == "text_delta":
            acc.text(delta["text"])
        elif dtype == "input_json_delta":
            index = p["index"]
            if acc.state.get(index) != "tool":
                raise KeyError(f"input_json_delta for block {index}, which is not an open tool_use block")
            acc.tool(index, arguments=delta["partial_json"], delta=True)  # a ToolCallDelta too: partials stream
        elif dtype == "thinking_delta":
            acc.reasoning(delta["thinking"])
        elif dtype == "signature_delta":
            acc.state[f"signature{p['index']}"] = delta["signature"]
        return False  # citations_delta, and delta types added later: not answer text
    if kind == "content_block_start":
        block = p["content_block"]
        btype = block["type"]
        if btype == "tool_use":
            acc.state[p["index"]] = "tool"
            start = block.get("input")  # {} when streaming; whole input if a server sends it here
            acc.tool(p["index"], block["id"], block["name"], json.dumps(start) if start else "")
        elif btype == "text":
            acc.text(block.get("text", ""))
        elif btype == "thinking":
            acc.state[p["index"]] = "thinking"
            acc.reasoning(block.get("thinking", ""))
        elif btype == "redacted_thinking":  # encrypted, whole: nothing to show, but it must go back
            acc.reasoning_done("anthropic", data=block["data"])
        return False
    if kind == "content_block_stop":
        index = p["index"]
        block_kind = acc.state.pop(index, None)
        if block_kind == "tool":
            acc.tool_done(index)
        elif block_kind == "thinking":
            acc.reasoning_done("anthropic", signature=acc.state.pop(f"signature{index}", None))
        return False
    if kind == "message_start":
        message = p["message"]
        acc.model = message.get("model") or acc.model
        acc.response_id = message.get("id")
        _usage(acc, message.get("usage"))
        return False
    if kind == "message_delta":
        _usage(acc, p.get("usage"))
        _finish(acc, p["delta"].get("stop_reason"))
        return False
    if kind == "message_stop":
        return True
    if kind == "error":
        raise error_from_body(acc.provider, p, partial=acc.partial)
    return False  # ping, and event types added to the API later: ignored, as Anthropic asks


def apply_message(acc: StreamAccumulator, body: dict[str, Any]) -> None:
    """Apply a whole non-streaming Messages API response to ``acc``."""
    acc.model = body.get("model") or acc.model
    acc.response_id = body.get("id")
    for i, block in enumerate(body["content"]):
        if block["type"] == "text":
            acc.text(block["text"])
        elif block["type"] == "thinking":
            acc.reasoning(block["thinking"])
            acc.reasoning_done("anthropic", signature=block.get("signature"))
        elif block["type"] == "redacted_thinking":
            acc.reasoning_done("anthropic", data=block["data"])
        elif block["type"] == "tool_use":
            acc.tool(i, block["id"], block["name"], json.dumps(block.get("input") or {}))
            acc.tool_done(i)
    _usage(acc, body.get("usage"))
    _finish(acc, body.get("stop_reason"))


def _usage(acc: StreamAccumulator, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    # Counts are cumulative: a non-null value replaces the one from an earlier event.
    raw = acc.state.setdefault("usage", {})
    raw.update((k, v) for k, v in usage.items() if isinstance(v, int))
    cache_write = raw.get("cache_creation_input_tokens", 0)
    cache_read = raw.get("cache_read_input_tokens", 0)
    acc.set_usage(
        raw.get("input_tokens", 0) + cache_write + cache_read, raw.get("output_tokens", 0), cache_read, cache_write
    )


def _finish(acc: StreamAccumulator, reason: Any) -> None:
    if reason == "refusal":
        raise ContentBlockedError(
            f"{acc.provider}: the model declined to answer (stop_reason refusal)",
            provider=acc.provider,
            partial=acc.partial,
        )
    if reason:
        acc.finish_reason = _FINISH.get(reason, reason)


# ---------------------------------------------------------------- provider


class AnthropicProvider(HTTPProvider):
    """Claude models through the Messages API, streamed as a hot observable.

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY``; ``base_url``
    defaults to the public API (``/v1/messages`` is appended).

    >>> p = AnthropicProvider("claude-haiku-4-5", api_key="sk-ant-example-key")
    >>> p.build_request(ChatRequest(messages=[Message.user("Hi")]), stream=True).url
    'https://api.anthropic.com/v1/messages'
    """

    type = "anthropic"
    default_base_url = "https://api.anthropic.com"
    default_model = "claude-haiku-4-5"
    api_key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    capabilities = Capabilities(tools=True, vision=True, structured_output="forced_tool")
    price_source = "anthropic"
    keepalive_events = frozenset({"ping"})

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        params = self.params(request)
        check_media(request.messages, "anthropic")
        body = build_request(request.messages, params, request.tools, stream=stream)
        headers = {"x-api-key": self.require_key(), "anthropic-version": API_VERSION}
        path = "/messages" if self.base_url.endswith("/v1") else "/v1/messages"
        return HTTPRequest(self.url(path), headers, body)

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        if event.event == "ping" and not event.data.strip():
            return False
        return apply_event(acc, _loads(event.data))

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None:
        apply_message(acc, body)


register_provider("anthropic", AnthropicProvider.from_spec)
