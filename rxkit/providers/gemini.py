"""Google Gemini provider (``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``).

Two pure halves, usable and tested on their own:

* :func:`build_request` turns rxkit messages into a ``GenerateContentRequest``:
  ``contents`` of ``parts`` (``text``, ``inlineData``, ``functionCall``,
  ``functionResponse``) with roles ``user`` / ``model``, the system prompt
  as ``systemInstruction``, tools as ``functionDeclarations``, ``toolConfig``
  and ``generationConfig``.
* :func:`apply_response` applies one streamed ``GenerateContentResponse``
  to the call's :class:`~rxkit.providers._hot.StreamAccumulator`: text
  parts become :class:`~rxkit.elements.TextDelta`, each ``functionCall``
  (Gemini sends them whole) a :class:`~rxkit.elements.ToolCallElement`;
  the last ``usageMetadata`` is the usage; a blocked prompt
  (``promptFeedback.blockReason``) or answer (``finishReason`` ``SAFETY``,
  ...) raises :class:`~rxkit.errors.ContentBlockedError`.

:class:`GeminiProvider` (type ``"gemini"``, key from ``GEMINI_API_KEY`` or
``GOOGLE_API_KEY``; base URL from ``GOOGLE_GEMINI_BASE_URL`` when none is given, as the
google-genai SDK reads it) plugs both into the shared HTTP machinery
(:mod:`rxkit.providers.http`): retries, timeouts, hot streams, events, cost.

>>> body = build_request([Message.system("Be brief."), Message.user("Hi")], {"temperature": 0})
>>> body["systemInstruction"], body["contents"], body["generationConfig"]
({'parts': [{'text': 'Be brief.'}]}, [{'role': 'user', 'parts': [{'text': 'Hi'}]}], {'temperature': 0})

Tool call ids: Gemini may send ``functionCall.id``; when it does not, rxkit
makes one up (``call_rx...``) and leaves it out of later requests. A
``thoughtSignature`` that came with a call (Gemini 3 requires it back) rides
in the id after ``|ts:`` so that it survives saving the conversation.
"""

from __future__ import annotations

import json
import os
import uuid
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
    redact,
)
from rxkit.providers.base import Capabilities
from rxkit.providers.http import HTTPProvider, HTTPRequest, SSEEvent, StreamAccumulator
from rxkit.providers.media import check_media
from rxkit.providers.registry import register_provider
from rxkit.toolformats import to_gemini
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

__all__ = ["GeminiProvider", "apply_response", "build_request", "error_from_body", "stream_path"]

_GENERATED = "call_rx"
_SIGNATURE = "|ts:"
_TOP_LEVEL = {"safetySettings", "cachedContent", "toolConfig", "labels", "serviceTier"}
_DROPPED = {"model", "tool_choice", "response_format", "stream", "messages", "reasoning"}
_RENAMED = {"max_tokens": "maxOutputTokens", "top_p": "topP", "stop": "stopSequences", "top_k": "topK"}
_BLOCKED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
REASONING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
"""``reasoning="low"|"medium"|"high"`` as a ``thinkingBudget`` for Gemini 2.x (Gemini 3 takes the level itself)."""


def stream_path(model: str) -> str:
    """The request path for ``model`` (a leading ``models/`` is accepted)."""
    return f"/v1beta/models/{model.removeprefix('models/')}:streamGenerateContent?alt=sse"


# ---------------------------------------------------------------- request


def build_request(
    messages: Sequence[Message], params: dict[str, Any], tools: Sequence[ToolDescriptor] = ()
) -> dict[str, Any]:
    """The JSON body of a ``streamGenerateContent`` call.

    ``params`` are merged rxkit parameters; ``temperature``, ``top_p``,
    ``max_tokens``, ``stop``, ``seed`` and ``response_format`` map into
    ``generationConfig``, ``tool_choice`` into ``toolConfig``. Other keys
    go into ``generationConfig`` as given, except top-level request fields
    (``safetySettings``, ``cachedContent``, ``toolConfig``, ...).
    ``reasoning`` sets ``thinkingConfig`` with ``includeThoughts`` (so the
    thoughts stream as reasoning): a token budget (``thinkingBudget``, an
    int) or a level (``thinkingLevel``, Gemini 3: ``"low"``, ``"high"``; for
    Gemini 2.x a level becomes a budget, see :data:`REASONING_BUDGETS`).

    >>> build_request([Message.user("Hi")], {"reasoning": 512})["generationConfig"]
    {'thinkingConfig': {'includeThoughts': True, 'thinkingBudget': 512}}
    """
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name, for functionResponse
    for message in messages:
        if message.role == "system":
            if message.text:
                system.append(message.text)
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = [wire for wire in (_part(p, names) for p in message.content) if wire is not None]
        if not parts:
            continue
        if role == "model":
            _text_signature(message, parts)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)  # parallel function responses share one turn
        else:
            contents.append({"role": role, "parts": parts})

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if tools:
        body["tools"] = to_gemini(tools)
    choice = params.get("tool_choice")
    if choice is not None and (tools or isinstance(choice, dict)):
        body["toolConfig"] = _tool_config(choice)
    config: dict[str, Any] = dict(params.get("generationConfig") or {})
    for key, value in params.items():
        if value is None or key in _DROPPED or key == "generationConfig":
            continue
        if key in _TOP_LEVEL:
            body[key] = value
        else:
            config[_RENAMED.get(key, key)] = value
    config.update(_response_format(params.get("response_format")))
    effort = params.get("reasoning")
    if effort is not None:
        if isinstance(effort, bool) or not isinstance(effort, (int, str)):
            raise ConfigError(f"gemini: reasoning={effort!r}: give a thinking budget in tokens or a level name")
        if isinstance(effort, str) and str(params.get("model") or "").removeprefix("models/").startswith("gemini-2"):
            if effort not in REASONING_BUDGETS:
                raise ConfigError(
                    f"gemini: reasoning={effort!r}: give one of {', '.join(REASONING_BUDGETS)} or a budget"
                )
            effort = REASONING_BUDGETS[effort]  # Gemini 2.x takes a budget, not a level
        key = "thinkingLevel" if isinstance(effort, str) else "thinkingBudget"
        config["thinkingConfig"] = {"includeThoughts": True, key: effort, **(config.get("thinkingConfig") or {})}
    if config:
        body["generationConfig"] = config
    return body


def _text_signature(message: Message, parts: list[dict[str, Any]]) -> None:
    """A signed plain answer (no calls) gets its thoughtSignature back on its last text part."""
    if message.tool_calls:
        return  # a turn with calls carries its signature on the first call (in the call id)
    signature = next(
        (p.signature for p in message.content if isinstance(p, ReasoningPart) and p.source == "gemini" and p.signature),
        None,
    )
    texts = [p for p in parts if "text" in p]
    if signature and texts:
        texts[-1]["thoughtSignature"] = signature


def _split_id(call_id: str) -> tuple[str, str | None]:
    base, _, signature = call_id.partition(_SIGNATURE)
    return base, signature or None


def _part(part: Any, names: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None
    if isinstance(part, ReasoningPart):
        return None  # thought summaries are not sent back; the signatures that must be ride on the calls
    if isinstance(part, (ImagePart, DocumentPart, VideoPart)):
        return _media(part.data, part.url, part.mime_type)
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": f"audio/{part.format}", "data": part.data}}
    if isinstance(part, ToolCallPart):
        call = part.call
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            raise ToolArgumentsError(
                f"tool call {call.id!r} ({call.name}) has arguments that are not JSON: {call.arguments[:200]!r}",
                tool=call.name,
            ) from None
        base, signature = _split_id(call.id)
        names[base] = call.name
        fc: dict[str, Any] = {"name": call.name, "args": args}
        if not base.startswith(_GENERATED):
            fc["id"] = base
        out: dict[str, Any] = {"functionCall": fc}
        if signature:
            out["thoughtSignature"] = signature
        return out
    if isinstance(part, ToolResultPart):
        base, _ = _split_id(part.call_id)
        name = part.name or names.get(base)
        if not name:
            raise ConfigError(f"tool result for call {part.call_id!r} names no function and matches no earlier call")
        try:
            value: Any = json.loads(part.content)
        except ValueError:
            value = part.content
        fr: dict[str, Any] = {"name": name, "response": {"error" if part.is_error else "output": value}}
        if not base.startswith(_GENERATED):
            fr["id"] = base
        return {"functionResponse": fr}
    raise ConfigError(f"cannot send content part {type(part).__name__} to Gemini")


def _media(data: str | None, url: str | None, mime_type: str) -> dict[str, Any]:
    if data is not None:
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    if url and url.startswith("data:"):
        header, _, payload = url.partition(",")
        return {"inlineData": {"mimeType": header[5:].split(";", 1)[0] or mime_type, "data": payload}}
    if not url:
        raise ConfigError("a media part needs either url or data")
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _tool_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        return choice
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [str(choice)]}}


def _response_format(fmt: Any) -> dict[str, Any]:
    if not isinstance(fmt, dict):
        return {}
    kind = fmt.get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema", spec) if isinstance(spec, dict) else {}
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    return {}


# ---------------------------------------------------------------- errors


def error_from_body(provider: str, body: Any, status: int | None = None, partial: str = "") -> ProviderError:
    """The rxkit error for a Google API error body ``{"error": {"code", "message", "status", "details"}}``.

    An invalid key is a 400 ``API_KEY_INVALID`` at Google: it maps to
    :class:`~rxkit.errors.AuthenticationError` like 401/403. A 429's
    ``RetryInfo.retryDelay`` is kept in ``retry_after`` (seconds).
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"message": str(body)[:500]}
    code = status or (error.get("code") if isinstance(error.get("code"), int) else 0) or 0
    raw_details = error.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    retry_after = None
    for d in details:
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                retry_after = float(delay[:-1])
            except ValueError:
                pass
    cls: type[ProviderError]
    if code in (401, 403) or "API_KEY_INVALID" in reasons:
        cls = AuthenticationError
    elif code == 429:
        cls = RateLimitError
    elif code >= 500:
        cls = ProviderServerError
    elif code:
        cls = ProviderHTTPError
    else:
        cls = ProviderError
    where = f"HTTP {code}" if status else "stream error"
    text = f"{provider}: {where} {error.get('status') or ''}: {error.get('message', '')}".replace("  ", " ")
    return cls(text, provider=provider, status=code, partial=partial, retry_after=retry_after)


# ---------------------------------------------------------------- stream


def apply_response(acc: StreamAccumulator, p: dict[str, Any]) -> None:
    """Apply one ``GenerateContentResponse`` (a stream chunk or a whole answer) to ``acc``.

    Raises :class:`~rxkit.errors.ContentBlockedError` for a blocked prompt or
    answer and a typed provider error for an ``error`` object; a missing
    field raises KeyError/TypeError, reported by the caller as malformed.
    """
    if "error" in p:
        raise error_from_body(acc.provider, p, partial=acc.partial)
    usage = p.get("usageMetadata")
    if usage:  # counts are cumulative: the last one is the total
        acc.set_usage(
            int(usage.get("promptTokenCount", 0)) + int(usage.get("toolUsePromptTokenCount", 0)),
            # thinking tokens are billed as output
            int(usage.get("candidatesTokenCount", 0)) + int(usage.get("thoughtsTokenCount", 0)),
            int(usage.get("cachedContentTokenCount", 0)),
        )
        acc.reasoning_tokens = int(usage.get("thoughtsTokenCount", 0))
    acc.model = p.get("modelVersion") or acc.model
    acc.response_id = p.get("responseId") or acc.response_id
    feedback = p.get("promptFeedback")
    if feedback and feedback.get("blockReason"):
        reason = feedback["blockReason"]
        message = f"{acc.provider}: the prompt was blocked ({reason})"
        raise ContentBlockedError(message, provider=acc.provider, reason=reason, partial=acc.partial)
    candidates = p.get("candidates")
    if not candidates:
        return
    candidate = candidates[0]
    for part in (candidate.get("content") or {}).get("parts") or ():
        if part.get("thought"):  # a thought summary: reasoning, not the answer
            acc.reasoning(part.get("text", ""))
            continue
        acc.finish_reasoning("gemini")  # the thoughts end where the answer starts
        if "text" in part:
            acc.text(part["text"])
            signature = part.get("thoughtSignature")
            if signature:  # Gemini 3 signs a plain answer in its last part: kept, to be handed back
                acc.state["text_signature"] = signature
        elif "functionCall" in part:
            fc = part["functionCall"]
            call_id = str(fc.get("id") or f"{_GENERATED}{uuid.uuid4().hex[:20]}")
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                call_id += _SIGNATURE + signature
            key = len(acc.tool_calls)
            acc.tool(key, call_id, fc["name"], json.dumps(fc.get("args") or {}, ensure_ascii=False))
            acc.tool_done(key)  # Gemini sends each call whole
    reason = candidate.get("finishReason")
    if reason and "text_signature" in acc.state:
        acc.reasoning_done("gemini", signature=acc.state.pop("text_signature"))
    if reason and reason != "FINISH_REASON_UNSPECIFIED":
        if reason in _BLOCKED:
            raise ContentBlockedError(
                f"{acc.provider}: the answer was blocked (finishReason {reason})",
                provider=acc.provider,
                reason=reason,
                partial=acc.partial,
            )
        stop = "tool_calls" if acc.tool_calls and reason == "STOP" else None
        acc.finish_reason = stop or _FINISH.get(reason, reason.lower())


# ---------------------------------------------------------------- provider


class GeminiProvider(HTTPProvider):
    """Gemini models through ``streamGenerateContent?alt=sse``, streamed as a hot observable.

    The key comes from ``api_key``, else ``GEMINI_API_KEY``, else
    ``GOOGLE_API_KEY``, and is sent in the ``x-goog-api-key`` header (never
    in the URL, which could end up in logs).

    >>> p = GeminiProvider("gemini-2.5-flash", api_key="AIza-example-key")
    >>> p.build_request(ChatRequest(messages=[Message.user("Hi")]), stream=True).url
    'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse'
    """

    type = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    default_model = "gemini-2.5-flash"
    api_key_env = "GEMINI_API_KEY"
    base_url_env = "GOOGLE_GEMINI_BASE_URL"
    capabilities = Capabilities(tools=True, vision=True, audio=True, json_mode=True, structured_output="json_schema")
    price_source = "google"

    def __init__(
        self, model: str = "", *, api_key: str | None = None, api_key_env: str | None = None, **kw: Any
    ) -> None:
        if api_key is None and api_key_env is None:
            api_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        super().__init__(model, api_key=api_key, api_key_env=api_key_env, **kw)

    def build_request(self, request: ChatRequest, *, stream: bool) -> HTTPRequest:
        params = self.params(request)
        check_media(request.messages, "gemini")
        body = build_request(request.messages, params, request.tools)
        path = stream_path(str(params.get("model") or self.model))
        if not stream:
            path = path.replace(":streamGenerateContent?alt=sse", ":generateContent")
        if self.base_url.endswith("/v1beta"):
            path = path.removeprefix("/v1beta")
        return HTTPRequest(self.url(path), {"x-goog-api-key": self.require_key()}, body)

    def parse_event(self, event: SSEEvent, acc: StreamAccumulator) -> bool:
        apply_response(acc, _loads(event.data))
        return False  # no end marker: the server closes the stream after the finishReason

    def parse_response(self, body: Any, acc: StreamAccumulator) -> None:
        apply_response(acc, body)

    def http_error(self, status: int, body: str, retry_after: float | None) -> ProviderHTTPError:
        # Google's shapes: a bad key is a 400 API_KEY_INVALID; a 429 says when to retry in RetryInfo.
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, list) and data:  # some front ends wrap the error in a list
            data = data[0]
        error = error_from_body(self.name, data, status) if isinstance(data, dict) else None
        if not isinstance(error, ProviderHTTPError):
            return super().http_error(status, body, retry_after)
        if retry_after is not None:  # a Retry-After header wins over the body's hint
            error.retry_after = retry_after  # type: ignore[attr-defined]
        error.body = redact(body[:2000])  # type: ignore[attr-defined]
        return error


register_provider("gemini", GeminiProvider.from_spec)
