"""OpenAI Responses API provider (``POST /v1/responses`` with ``"stream": true``), type ``"openai-responses"``.

Two pure halves, usable and tested on their own:

* :func:`build_request` turns rxkit messages into a Responses body: system
  messages become ``instructions``; user content ``input_text``,
  ``input_image``, ``input_file`` and ``input_audio`` parts; an assistant
  turn its ``reasoning`` items (passed back with their
  ``encrypted_content``), its text (``output_text``) and its
  ``function_call`` items; tool results ``function_call_output`` items.
  Tools are flat ``{"type": "function", "name", "parameters", ...}``;
  ``response_format`` becomes ``text.format``; ``max_tokens``
  ``max_output_tokens``; ``reasoning`` (an effort name) ``reasoning:
  {"effort", "summary": "auto"}``.
* :func:`apply_event` applies one stream event to the call's accumulator:
  ``response.created``, ``response.output_item.added`` / ``.done``,
  ``response.output_text.delta``, ``response.refusal.delta``,
  ``response.function_call_arguments.delta``,
  ``response.reasoning_summary_text.delta``, ``response.completed`` (usage,
  reasoning tokens included), ``response.incomplete``, ``response.failed``
  and ``error``.

History: stateless by default. Every call sends the whole conversation with
``store: false``, so rxkit's own history (and its state stores) is the
truth, and reasoning items come back as ``encrypted_content`` (requested
with ``include``) to be handed back within a tool loop. Stateful instead:
pass ``previous_response_id`` (a request ``extra`` or a provider default;
``ChatResponse.response_id`` holds the id of each answer), and only the
messages after the last assistant turn are sent, with ``store: true``
(``store=True`` on the provider stores every response). A chain is one call
long: within a tool loop, each round's ``previous_response_id`` would have
to be the round before's, so keep tool loops stateless (the default).

>>> body = build_request([Message.system("Be brief."), Message.user("Hi")], {"model": "gpt-5-mini"})
>>> body["instructions"], body["input"]
('Be brief.', [{'role': 'user', 'content': [{'type': 'input_text', 'text': 'Hi'}]}])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orjson import loads as _loads

from rxkit.errors import ConfigError, ContentBlockedError, ProviderError, ProviderServerError, RateLimitError
from rxkit.providers.base import Capabilities
from rxkit.providers.http import HTTPProvider, HTTPRequest, SSEEvent, StreamAccumulator
from rxkit.providers.media import check_media
from rxkit.providers.registry import register_provider
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

__all__ = ["OpenAIResponsesProvider", "apply_event", "apply_response", "build_request"]

SOURCE = "openai-responses"
"""``ReasoningPart.source`` of reasoning items from this API (only they are sent back to it)."""

_HANDLED = frozenset(
    {
        "model",
        "max_tokens",
        "response_format",
        "tool_choice",
        "stream",
        "messages",
        "tools",
        "reasoning",
        "stop",
        "seed",
        "previous_response_id",
        "store",
    }
)


# ---------------------------------------------------------------- request


def build_request(
    messages: Sequence[Message],
    params: dict[str, Any],
    tools: Sequence[ToolDescriptor] = (),
    *,
    stream: bool = True,
    store: bool = False,
) -> dict[str, Any]:
    """The JSON body for ``POST /v1/responses`` (see the module docstring)."""
    previous = params.get("previous_response_id")
    if previous:  # the server holds the conversation up to that response: send only what came after it
        last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
        messages = [m for i, m in enumerate(messages) if i > last and m.role != "system"] or list(messages[-1:])
    instructions = "\n\n".join(m.text for m in messages if m.role == "system" and m.text)
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role != "system":
            items.extend(_items(message))
    body: dict[str, Any] = {"model": params.get("model"), "input": items}
    if instructions:
        body["instructions"] = instructions
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema,
                "strict": False,  # the Responses API makes functions strict by default, which most schemas fail
            }
            for t in tools
        ]
    choice = params.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required") or isinstance(choice, dict)
            else {"type": "function", "name": str(choice)}
        )
    if params.get("max_tokens") is not None:
        body["max_output_tokens"] = params["max_tokens"]
    fmt = _text_format(params.get("response_format"))
    if fmt is not None:
        body["text"] = {"format": fmt}
    effort = params.get("reasoning")
    if effort is not None:
        if not isinstance(effort, str):
            raise ConfigError(
                f"openai-responses: reasoning={effort!r}: give an effort name (minimal, low, medium, high), "
                "not a token budget"
            )
        body["reasoning"] = {"effort": effort, "summary": "auto"}
    if params.get("stop") is not None:
        raise ConfigError("openai-responses: the Responses API has no stop sequences (stop=...)")
    for key, value in params.items():
        if key not in _HANDLED and value is not None:
            body[key] = value
    store = bool(params.get("store", store)) or bool(previous)
    body["store"] = store
    if previous:
        body["previous_response_id"] = previous
    elif not store and effort is not None:  # stateless: reasoning comes back encrypted, to be passed back
        body["include"] = [*body.get("include", ()), "reasoning.encrypted_content"]
    if stream:
        body["stream"] = True
    return body


def _items(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]]
    if message.role == "tool" or message.tool_results:
        out = [
            {"type": "function_call_output", "call_id": r.call_id, "output": r.content} for r in message.tool_results
        ]
        rest = [p for p in message.content if not isinstance(p, ToolResultPart)]
        if rest:
            out.append({"role": "user", "content": [_input(p) for p in rest]})
        return out
    if message.role == "user":
        return [{"role": "user", "content": [_input(p) for p in message.content]}]
    out = []
    text: list[str] = []
    for part in message.content:
        if isinstance(part, ReasoningPart):
            if part.source == SOURCE and part.id:  # a reasoning item of this API, by its id
                item: dict[str, Any] = {"type": "reasoning", "id": part.id, "summary": []}
                if part.text:
                    item["summary"] = [{"type": "summary_text", "text": part.text}]
                if part.data:
                    item["encrypted_content"] = part.data
                out.append(item)
        elif isinstance(part, TextPart):
            text.append(part.text)
        elif isinstance(part, ToolCallPart):
            call = part.call
            out.append({"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments})
        else:
            raise ConfigError(f"openai-responses: an assistant message cannot hold a {type(part).__name__}")
    if any(text):
        out.append({"role": "assistant", "content": [{"type": "output_text", "text": "".join(text)}]})
    return out


def _input(part: Any) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url or f"data:{part.mime_type};base64,{part.data}"
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if isinstance(part, DocumentPart):
        if part.data is not None:
            data_url = f"data:{part.mime_type};base64,{part.data}"
            return {"type": "input_file", "filename": part.filename or "document.pdf", "file_data": data_url}
        if not part.url:
            raise ConfigError("a document part needs either url or data")
        if part.url.startswith("data:"):
            return {"type": "input_file", "filename": part.filename or "document.pdf", "file_data": part.url}
        return {"type": "input_file", "file_url": part.url}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if isinstance(part, VideoPart):
        raise ConfigError("the OpenAI Responses API does not accept video input")
    raise ConfigError(f"openai-responses: cannot send a {type(part).__name__} in a user message")


def _text_format(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema", fmt)
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ConfigError("openai-responses: response_format json_schema needs a 'schema' object")
        out: dict[str, Any] = {"type": "json_schema", "name": spec.get("name") or "response", "schema": schema}
        if "strict" in spec:
            out["strict"] = spec["strict"]
        return out
    return dict(fmt)  # {"type": "json_object"} or {"type": "text"}: the same shape here


# ---------------------------------------------------------------- stream


def apply_event(acc: StreamAccumulator, p: dict[str, Any]) -> bool:
    """Apply one stream event to ``acc``; True once the response is complete (or incomplete).

    Raises a typed error for ``response.failed`` and ``error`` events; a
    missing field raises KeyError/TypeError, reported as a malformed event.
    """
    kind = p["type"]
    if kind == "response.output_text.delta" or kind == "response.refusal.delta":
        acc.text(p["delta"])
    elif kind == "response.function_call_arguments.delta":
        acc.tool(p["output_index"], arguments=p["delta"])
    elif kind == "response.reasoning_summary_text.delta":
        acc.reasoning(p["delta"])
    elif kind == "response.reasoning_summary_part.added":
        if p.get("summary_index"):
            acc.reasoning("\n\n")  # summary parts are paragraphs
    elif kind == "response.output_item.added":
        item = p["item"]
        if item["type"] == "function_call":
            acc.tool(p["output_index"], item["call_id"], item["name"], item.get("arguments") or "")
    elif kind == "response.output_item.done":
        _item_done(acc, p["output_index"], p["item"], streamed=True)
    elif kind == "response.created" or kind == "response.in_progress":
        response = p["response"]
        acc.response_id = response.get("id") or acc.response_id
        acc.model = response.get("model") or acc.model
    elif kind in ("response.completed", "response.incomplete"):
        _finish(acc, p["response"])
        return True
    elif kind == "response.failed":
        response = p["response"]
        acc.response_id = response.get("id") or acc.response_id
        raise _error(acc, response.get("error") or {}, "the response failed")
    elif kind == "error":
        raise _error(acc, p, "error in stream")
    return False  # response.content_part.*, *.done, and event types added later: nothing to do


def apply_response(acc: StreamAccumulator, body: dict[str, Any]) -> None:
    """Apply a whole (non-streamed) Response object to ``acc``."""
    acc.response_id = body.get("id")
    acc.model = body.get("model") or acc.model
    if body.get("status") == "failed":
        raise _error(acc, body.get("error") or {}, "the response failed")
    for index, item in enumerate(body["output"]):
        if item["type"] == "function_call":
            acc.tool(index, item["call_id"], item["name"], item.get("arguments") or "")
        _item_done(acc, index, item, streamed=False)
    _finish(acc, body)


def _item_done(acc: StreamAccumulator, index: int, item: dict[str, Any], *, streamed: bool) -> None:
    kind = item["type"]
    if kind == "function_call":
        acc.tool_done(index)
    elif kind == "reasoning":
        summary = "\n\n".join(s.get("text", "") for s in item.get("summary") or ())
        if not streamed and summary:
            acc.reasoning(summary)
        acc.reasoning_done(SOURCE, id=item.get("id"), data=item.get("encrypted_content"), text=summary)
    elif kind == "message" and not streamed:
        for content in item.get("content") or ():
            if content.get("type") == "output_text":
                acc.text(content["text"])
            elif content.get("type") == "refusal":
                acc.text(content["refusal"])


def _finish(acc: StreamAccumulator, response: dict[str, Any]) -> None:
    acc.response_id = response.get("id") or acc.response_id
    acc.model = response.get("model") or acc.model
    usage = response.get("usage")
    if isinstance(usage, dict):
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        acc.set_usage(usage.get("input_tokens"), usage.get("output_tokens"), cached)
        acc.reasoning_tokens = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason") or "incomplete"
        if reason == "content_filter":
            raise ContentBlockedError(
                f"{acc.provider}: the answer was stopped by the content filter",
                provider=acc.provider,
                partial=acc.partial,
            )
        acc.finish_reason = "length" if reason == "max_output_tokens" else reason
        return
    calls = acc.tool_calls or any(item.get("type") == "function_call" for item in response.get("output") or ())
    acc.finish_reason = "tool_calls" if calls else "stop"


def _error(acc: StreamAccumulator, error: dict[str, Any], what: str) -> ProviderError:
    code = error.get("code") or error.get("type") or "error"
    message = f"{what}: {error.get('message') or json.dumps(error)[:300]} ({code})"
    if code in ("rate_limit_exceeded", "server_error", "server_is_overloaded", "slow_down"):
        cls: type[ProviderError] = RateLimitError if code == "rate_limit_exceeded" else ProviderServerError
        return cls(f"{acc.provider}: {message}", provider=acc.provider, partial=acc.partial)
    return acc.stream_error(message)


# ---------------------------------------------------------------- provider


class OpenAIResponsesProvider(HTTPProvider):
    """OpenAI models through the Responses API, streamed as a hot observable.

    >>> p = OpenAIResponsesProvider("gpt-5-mini", api_key="sk-test-000000000000")
    >>> req = p.build_request(ChatRequest(messages=[Message.user("Hi")], extra={"reasoning": "low"}), stream=True)
    >>> req.url, req.body["store"], req.body["reasoning"]
    ('https://api.openai.com/v1/responses', False, {'effort': 'low', 'summary': 'auto'})
    >>> req.body["include"]
    ['reasoning.encrypted_content']
    """

    type = "openai-responses"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    capabilities = Capabilities(tools=True, vision=True, audio=True, json_mode=True)
    price_source: str | None = "openai"
    default_model = "gpt-4.1-mini"

    def __init__(self, model: str = "", *, store: bool = False, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.store = store  # True: OpenAI keeps every response (and previous_response_id can point at it)

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        params = self.params(request)
        if not params.get("model"):
            raise ConfigError(f"provider {self.name!r} needs a model name")
        check_media(request.messages, "openai")
        body = build_request(request.messages, params, request.tools, stream=stream, store=self.store)
        headers = {"authorization": f"Bearer {self.require_key()}"}
        return HTTPRequest(self.url("/responses"), headers, body)

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        return apply_event(acc, _loads(event.data))

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None:
        apply_response(acc, body)


register_provider("openai-responses", OpenAIResponsesProvider.from_spec)
