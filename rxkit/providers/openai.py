"""OpenAI Chat Completions, and any OpenAI-compatible server (llama.cpp, vLLM, Ollama).

Registered as ``"openai"`` (base URL ``https://api.openai.com/v1``, or
``OPENAI_BASE_URL`` as the official SDK reads it; key from ``OPENAI_API_KEY``)
and ``"openai-compatible"`` (``base_url`` required, key optional)::

    provider = OpenAIProvider("gpt-4o-mini")            # key from OPENAI_API_KEY
    request = ChatRequest(messages=[Message.user("Hi")], seed=7)
    response = await provider.chat(request)             # the whole answer at once
    provider.stream(request).subscribe(print)           # hot: TextDelta..., EndOfTurn
    local = OpenAIProvider("smollm2", base_url="http://127.0.0.1:8080/v1")  # llama.cpp, vLLM, Ollama
    await provider.aclose()                             # closes the pooled connections

Streaming asks for usage (``stream_options.include_usage``); tool calls are
assembled from index-based argument fragments; images go as ``image_url``
content parts; ``response_format`` accepts ``{"type": "json_object"}`` and
``{"type": "json_schema", "json_schema": {...}}`` (or the short form
``{"type": "json_schema", "schema": {...}, "name": ...}``).

A refusal (``delta.refusal``, structured outputs) is streamed as text, so the
user sees why nothing else came; ``stream_usage=False`` leaves out
``stream_options`` for a server that rejects it.

Quirks handled: llama.cpp repeats a tool call's id and name in every chunk
(they are taken once, arguments appended) and sends no usage when
streaming; vLLM may send the usage chunk with ``"choices": null``; a server
may send arguments as an object instead of a JSON string.
"""

from __future__ import annotations

import json
from typing import Any

from orjson import loads as _loads

from rxkit.errors import ConfigError, ContentBlockedError, StreamError
from rxkit.providers.base import Capabilities
from rxkit.providers.http import HTTPProvider, HTTPRequest, SSEEvent, StreamAccumulator
from rxkit.providers.media import check_media
from rxkit.providers.registry import ProviderSpec, register_provider
from rxkit.toolformats import to_openai
from rxkit.types import (
    AudioPart,
    ChatRequest,
    DocumentPart,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

__all__ = ["OpenAIProvider", "convert_messages"]

# ChatRequest fields that map to a differently named or shaped body field.
_HANDLED = frozenset(
    {"model", "max_tokens", "response_format", "tool_choice", "stream", "messages", "tools", "reasoning"}
)


class OpenAIProvider(HTTPProvider):
    """OpenAI Chat Completions over aiohttp, streaming as a hot observable.

    >>> p = OpenAIProvider("gpt-4o-mini", api_key="sk-test-000000000000")
    >>> req = p.build_request(ChatRequest(messages=[Message.user("Hi")], seed=7), stream=True)
    >>> req.url, req.body["stream_options"], req.body["seed"]
    ('https://api.openai.com/v1/chat/completions', {'include_usage': True}, 7)
    """

    type = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    capabilities = Capabilities(
        tools=True, vision=True, audio=True, json_mode=True, structured_output="json_schema_strict"
    )
    price_source: str | None = "openai"
    default_model = "gpt-4.1-mini"  # not a reasoning model: streams its first token soonest

    def __init__(
        self, model: str = "", *, compatible: bool | None = None, stream_usage: bool = True, **kwargs: Any
    ) -> None:
        base_url = kwargs.get("base_url")
        if compatible is None:
            compatible = bool(base_url) and "api.openai.com" not in str(base_url)
        if compatible:
            self.price_source = None  # before the base class looks the model's price up
        super().__init__(model, **kwargs)
        self.stream_usage = stream_usage  # False for a server that rejects stream_options
        self.compatible = compatible
        if compatible:
            self.model = model  # the server's own model unless one is named (llama.cpp serves one)
            # Talking to anything but OpenAI itself: the key is optional, never
            # taken from OPENAI_API_KEY (it must not leak to another server),
            # and OpenAI's prices do not apply: only given prices do.
            if not kwargs.get("api_key") and not kwargs.get("api_key_env"):
                self.api_key = None
            if kwargs.get("name") is None:
                self.name = "openai-compatible"

    # -- request -------------------------------------------------------------

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        params = self.params(request)
        check_media(request.messages, "openai")
        model = params.get("model") or ""
        if not model and not self.compatible:
            raise ConfigError(f"provider {self.name!r} needs a model name")
        body: dict[str, Any] = {
            "model": model or "default",
            "messages": convert_messages(
                request.messages, empty_content="" if self.compatible else None, reasoning=self.compatible
            ),
        }
        for key, value in params.items():
            if key not in _HANDLED and value is not None:
                body[key] = value
        if params.get("max_tokens") is not None:
            # OpenAI's reasoning models only accept max_completion_tokens; other servers know max_tokens.
            body["max_tokens" if self.compatible else "max_completion_tokens"] = params["max_tokens"]
        if request.tools:
            body["tools"] = to_openai(request.tools)
        choice = params.get("tool_choice")
        if choice is not None:
            body["tool_choice"] = (
                choice
                if choice in ("auto", "none", "required") or isinstance(choice, dict)
                else {"type": "function", "function": {"name": choice}}
            )
        if params.get("response_format") is not None:
            body["response_format"] = _response_format(params["response_format"])
        effort = params.get("reasoning")
        if effort is not None:
            if not isinstance(effort, str):
                raise ConfigError(
                    f"{self.name}: reasoning={effort!r}: Chat Completions takes an effort name "
                    "(reasoning_effort: minimal, low, medium, high), not a token budget"
                )
            body["reasoning_effort"] = effort
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        headers = {}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        elif not self.compatible:
            self.require_key()
        return HTTPRequest(self.url("/chat/completions"), headers, body)

    # -- streaming -----------------------------------------------------------

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        data = event.data
        if data == "[DONE]":
            return True
        chunk = _loads(data)
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                # OpenAI-compatible reasoning servers (DeepSeek, vLLM, llama.cpp, Ollama) stream the model's
                # thinking as reasoning_content (or reasoning): ahead of the answer, never part of it.
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if thought:
                    acc.reasoning(thought)
                content = delta.get("content")
                if content:
                    acc.finish_reasoning("openai")
                    acc.text(content)
                calls = delta.get("tool_calls")
                if calls:
                    for position, call in enumerate(calls):
                        _tool_fragment(acc, position, call)
                refusal = delta.get("refusal")
                if refusal:  # the model declined (structured outputs): the user gets its words
                    acc.state["refusal"] = True
                    acc.text(refusal)
            reason = choice.get("finish_reason")
            if reason:
                acc.finish_reasoning("openai")
                acc.finish_reason = reason
                if reason == "content_filter":
                    raise ContentBlockedError(
                        f"{self.name}: the answer was stopped by the content filter",
                        provider=self.name,
                        partial=acc.partial,
                    )
        elif "error" in chunk:
            raise _stream_error(acc, chunk["error"])
        if "model" in chunk and acc.response_id is None:
            acc.response_id = chunk.get("id")
            acc.model = chunk["model"] or acc.model
        usage = chunk.get("usage")
        if usage:
            _usage(acc, usage)
        return False

    # -- non-streaming -------------------------------------------------------

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None:
        acc.model = body.get("model") or acc.model
        acc.response_id = body.get("id")
        choice = body["choices"][0]
        message = choice["message"]
        thought = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(thought, str) and thought:
            acc.reasoning(thought)
            acc.reasoning_done("openai")
        if message.get("content"):
            acc.text(message["content"])
        if message.get("refusal"):
            acc.state["refusal"] = True
            acc.text(message["refusal"])
        for position, call in enumerate(message.get("tool_calls") or ()):
            _tool_fragment(acc, position, call)
        acc.finish_reason = choice.get("finish_reason") or "stop"
        if body.get("usage"):
            _usage(acc, body["usage"])


def _tool_fragment(acc: StreamAccumulator, position: int, call: dict[str, Any]) -> None:
    fn = call.get("function") or {}
    arguments = fn.get("arguments") or ""
    if not isinstance(arguments, str):  # some servers send the object itself
        arguments = json.dumps(arguments)
    index = call.get("index")
    acc.tool(position if index is None else index, call.get("id"), fn.get("name"), arguments)


def _usage(acc: StreamAccumulator, usage: dict[str, Any]) -> None:
    details = usage.get("prompt_tokens_details") or {}
    acc.set_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"), details.get("cached_tokens"))
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        acc.reasoning_tokens = reasoning  # part of completion_tokens, billed as output


def _stream_error(acc: StreamAccumulator, error: Any) -> StreamError:
    if isinstance(error, dict):
        message = error.get("message") or json.dumps(error)
        kind = error.get("type") or error.get("code")
        if kind:
            message = f"{message} ({kind})"
    else:
        message = str(error)
    return acc.stream_error(f"error in stream: {message}")


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema" and "json_schema" not in fmt:
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise ConfigError("response_format json_schema needs a 'schema' (or 'json_schema') object")
        inner: dict[str, Any] = {"name": fmt.get("name", "response"), "schema": schema}
        if "strict" in fmt:
            inner["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": inner}
    return fmt


def convert_messages(
    messages: list[Message], *, empty_content: str | None = None, reasoning: bool = False
) -> list[dict[str, Any]]:
    """rxkit messages as Chat Completions messages.

    Tool results become one ``role: tool`` message each; assistant tool calls
    go in ``tool_calls``; images, PDFs and audio become content parts. An assistant
    message with only tool calls gets ``content: empty_content``: OpenAI wants
    null, llama.cpp's server rejects null and takes ``""``. Reasoning is left
    out, except with ``reasoning=True`` (OpenAI-compatible servers) where an
    assistant turn that called tools carries it back as ``reasoning_content``
    (DeepSeek's thinking mode requires it within a tool loop).

    >>> convert_messages([Message.user("Hi")])
    [{'role': 'user', 'content': 'Hi'}]
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        results = [p for p in m.content if isinstance(p, ToolResultPart)]
        for r in results:
            out.append({"role": "tool", "tool_call_id": r.call_id, "content": r.content})
        rest = [p for p in m.content if not isinstance(p, (ToolResultPart, ReasoningPart))]
        if results and not rest:
            continue
        entry: dict[str, Any] = {"role": "user" if m.role == "tool" else m.role}
        if m.name:
            entry["name"] = m.name
        calls = [p.call for p in rest if isinstance(p, ToolCallPart)]
        parts = [p for p in rest if not isinstance(p, ToolCallPart)]
        if all(isinstance(p, TextPart) for p in parts):
            text = "".join(p.text for p in parts if isinstance(p, TextPart))
            entry["content"] = text if (text or not calls) else empty_content
        else:
            entry["content"] = [_part(p) for p in parts]
        thought = "".join(p.text for p in m.content if isinstance(p, ReasoningPart) and p.source == "openai")
        if reasoning and calls and thought:
            entry["reasoning_content"] = thought
        if calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ]
        out.append(entry)
    return out


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url or f"data:{part.mime_type};base64,{part.data}"
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if isinstance(part, DocumentPart):
        if part.data is None and not (part.url or "").startswith("data:"):
            raise ConfigError(
                "Chat Completions takes documents as data (bytes or a path), not by URL; "
                "use the openai-responses provider for file_url"
            )
        data_url = part.url if part.data is None else f"data:{part.mime_type};base64,{part.data}"
        return {"type": "file", "file": {"filename": part.filename or "document.pdf", "file_data": data_url}}
    raise ConfigError(f"cannot send a {type(part).__name__} to an OpenAI-style API")


def _openai(spec: ProviderSpec) -> OpenAIProvider:
    return OpenAIProvider.from_spec(spec)


def _compatible(spec: ProviderSpec) -> OpenAIProvider:
    if not spec.base_url:
        raise ConfigError("provider type 'openai-compatible' needs a base_url (e.g. http://127.0.0.1:8080/v1)")
    return OpenAIProvider.from_spec(spec, compatible=True)


register_provider("openai", _openai)
register_provider("openai-compatible", _compatible)
