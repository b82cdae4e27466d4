"""A loopback Gemini API server for tests, driven by recorded streams.

``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` checked the way
Google checks it (``x-goog-api-key``: a wrong key is a 400 ``API_KEY_INVALID``,
a missing one a 403; ``contents`` roles and parts), errors as
``{"error": {"code", "message", "status"}}``, and each streamed
``GenerateContentResponse`` as one ``data:`` line ended by CRLF CRLF, as
Google's front end writes them.

    async with GeminiServer() as server:
        server.push(Reply(events=TEXT_STREAM))
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.providers.anthropic_server import Reply, ScriptedServer

__all__ = [
    "BLOCKED_PROMPT_STREAM",
    "MULTI_CALL_STREAM",
    "TEXT_STREAM",
    "GeminiServer",
    "Reply",
    "check_declaration",
    "check_generate_body",
    "check_openapi_schema",
    "check_thought_signatures",
    "chunk",
    "google_error",
]


def chunk(response: dict[str, Any]) -> str:
    """One SSE event carrying a ``GenerateContentResponse``."""
    return "data: " + json.dumps(response, separators=(",", ": "), ensure_ascii=False) + "\r\n\r\n"


def google_error(code: int, status: str, message: str, details: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


class GeminiServer(ScriptedServer):
    """The Gemini API's streaming endpoint."""

    api_key = "AIzaSyLoopbackTestKey0000000000000000000"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1beta/models/{call}", self.handle)]

    def no_reply(self) -> web.Response:
        return web.json_response(google_error(500, "INTERNAL", "no scripted reply left"), status=500)

    def streaming(self, request: web.Request, body: Any) -> bool:
        return request.match_info["call"].endswith(":streamGenerateContent")

    def validate(self, request: web.Request, body: Any) -> web.Response | None:
        model, _, method = request.match_info["call"].partition(":")
        if method not in ("streamGenerateContent", "generateContent") or not model:
            return web.json_response(google_error(404, "NOT_FOUND", f"unknown method {method!r}"), status=404)
        if request.query.get("key"):
            return _bad("keys belong in the x-goog-api-key header in these tests")
        key = request.headers.get("x-goog-api-key")
        if key is None:
            body403 = google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
            return web.json_response(body403, status=403)
        if key != self.api_key:
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            invalid = google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
            return web.json_response(invalid, status=400)
        if method == "streamGenerateContent" and request.query.get("alt") != "sse":
            return _bad("this loopback server streams only with alt=sse (else Google sends a JSON array)")
        if not isinstance(body, dict):
            return _bad("Invalid JSON payload received.")
        problem = check_generate_body(body)
        if problem is None and model.startswith("gemini-3"):  # Gemini 3 validates thought signatures
            problem = check_thought_signatures(body)
        return None if problem is None else _bad(problem)


def _bad(message: str) -> web.Response:
    return web.json_response(google_error(400, "INVALID_ARGUMENT", message), status=400)


_PART_KEYS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}
_TOP_KEYS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
    "serviceTier",
}


def check_generate_body(body: dict[str, Any]) -> str | None:
    """What the real API would reject in a ``GenerateContentRequest``, or None."""
    unknown = set(body) - _TOP_KEYS
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    calls_in_previous: int = 0
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"contents[{i}].role: Please use a valid role: user, model."
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            keys = set(part) - {"thought", "thoughtSignature"}
            if len(keys) != 1 or not keys <= _PART_KEYS:
                return f"contents[{i}].parts[{j}]: a part holds exactly one kind of data, got {sorted(part)}"
            if "inlineData" in part:
                blob = part["inlineData"]
                if not blob.get("mimeType") or not isinstance(blob.get("data"), str) or not blob["data"]:
                    return f"contents[{i}].parts[{j}].inline_data: mime_type and data are required"
                try:
                    base64.b64decode(blob["data"], validate=True)
                except ValueError:
                    where = f"contents[{i}].parts[{j}].inline_data.data"
                    return f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed"
            if "fileData" in part and not (part["fileData"].get("fileUri") and part["fileData"].get("mimeType")):
                return f"contents[{i}].parts[{j}].file_data: file_uri and mime_type are required"
            if "functionCall" in part and content["role"] != "model":
                return f"contents[{i}].parts[{j}]: functionCall belongs to a model turn"
            if "functionResponse" in part:
                fr = part["functionResponse"]
                if not fr.get("name") or not isinstance(fr.get("response"), dict):
                    return f"contents[{i}].parts[{j}].functionResponse: name and an object response are required"
        responses = sum("functionResponse" in p for p in parts)
        if responses and responses != calls_in_previous:
            return (
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        calls_in_previous = sum("functionCall" in p for p in parts)
    config = body.get("generationConfig") or {}
    if ("responseJsonSchema" in config or "responseSchema" in config) and config.get("responseMimeType") not in (
        "application/json",
        "text/x.enum",
    ):
        return "generationConfig.responseMimeType: a response schema needs responseMimeType application/json"
    if "responseJsonSchema" in config and "responseSchema" in config:
        return "generationConfig: responseSchema and responseJsonSchema cannot both be set"
    system = body.get("systemInstruction")
    if system is not None and not (isinstance(system, dict) and system.get("parts")):
        return "systemInstruction: parts are required"
    for t, tool in enumerate(body.get("tools") or ()):
        for d, decl in enumerate(tool.get("functionDeclarations") or ()):
            problem = check_declaration(decl, f"tools[{t}].function_declarations[{d}]")
            if problem is not None:
                return problem
    return None


def check_thought_signatures(body: dict[str, Any]) -> str | None:
    """Gemini 3's rule: in the current turn (the contents after the last user message that is not only
    function responses), the first functionCall part of each model step must carry its thoughtSignature."""
    contents = body["contents"]
    start = 0
    for i, content in enumerate(contents):
        if content["role"] == "user" and not all("functionResponse" in p for p in content["parts"]):
            start = i
    position = 0
    for content in contents[start:]:
        calls = [p for p in content["parts"] if "functionCall" in p]
        position += len(content["parts"])
        if calls and content["role"] == "model" and not calls[0].get("thoughtSignature"):
            return (
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to "
                "work correctly, and missing thought_signature may lead to degraded model performance. Additional "
                f"data, function call `default_api:{calls[0]['functionCall'].get('name')}` , position {position}. "
                "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )
    return None


_DECLARATION_KEYS = {
    "name",
    "description",
    "behavior",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
# ``parameters`` is a google.ai.generativelanguage.v1beta.Schema: "a select subset of an OpenAPI 3.0
# schema object". Its JSON names, all of them; anything else is an unknown field, refused with a 400.
_SCHEMA_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
_SCHEMA_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


def check_declaration(decl: Any, where: str) -> str | None:
    """What the real API would reject in one ``FunctionDeclaration``, or None."""
    if not isinstance(decl, dict):
        return f"Invalid value at '{where}': expected a FunctionDeclaration object"
    for key in decl:
        if key not in _DECLARATION_KEYS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    name = decl.get("name")
    if not name:
        return f"* GenerateContentRequest.{where}.name: [FIELD_INVALID] Invalid function name: name is required."
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        return (
            f"* GenerateContentRequest.{where}.name: [FIELD_INVALID] Invalid function name. Must start with a letter "
            "or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes "
            "(-), with a maximum length of 64."
        )
    if "parameters" in decl and "parametersJsonSchema" in decl:
        return f"{where}: parameters and parametersJsonSchema are mutually exclusive"
    if "parameters" in decl:
        return check_openapi_schema(decl["parameters"], f"{where}.parameters")
    if "parametersJsonSchema" in decl:
        schema = decl["parametersJsonSchema"]
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            return f"* GenerateContentRequest.{where}.parameters_json_schema: the schema must describe an object"
    return None


def check_openapi_schema(node: Any, where: str) -> str | None:
    """What the real API would reject in a ``Schema`` (the OpenAPI subset of ``parameters``), or None.

    Full JSON Schema keys (``additionalProperties``, ``$ref``/``$defs``,
    ``const``, ``oneOf``, ``exclusiveMinimum``...) are unknown fields there,
    and a ``type`` must be one name (not a list).
    """
    if not isinstance(node, dict):
        return f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Schema)"
    for key in node:
        if key not in _SCHEMA_KEYS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    kind = node.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _SCHEMA_TYPES):
        enum_name = "type.googleapis.com/google.ai.generativelanguage.v1beta.Type"
        return f"Invalid value at '{where}.type' ({enum_name}), {json.dumps(kind)}"
    for i, value in enumerate(node.get("enum") or ()):
        if not isinstance(value, str):
            return f"Invalid value at '{where}.enum[{i}]' (TYPE_STRING), {json.dumps(value)}"
    children = [(f"{where}.properties[{i}].value", v) for i, v in enumerate((node.get("properties") or {}).values())]
    children += [(f"{where}.any_of[{i}]", v) for i, v in enumerate(node.get("anyOf") or ())]
    if "items" in node:
        children.append((f"{where}.items", node["items"]))
    for path, child in children:
        problem = check_openapi_schema(child, path)
        if problem is not None:
            return problem
    return None


# ---------------------------------------------------------------- recordings

_USAGE_START = {
    "promptTokenCount": 9,
    "totalTokenCount": 9,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}

TEXT_STREAM = [
    chunk(
        {
            "candidates": [{"content": {"parts": [{"text": "The capital of France"}], "role": "model"}, "index": 0}],
            "usageMetadata": _USAGE_START,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "v0hZaKnVJsW3nvgPuPHs2Qk",
        }
    ),
    chunk(
        {
            "candidates": [
                {"content": {"parts": [{"text": " is Paris — « Paris » 🇫🇷."}], "role": "model"}, "index": 0}
            ],
            "usageMetadata": _USAGE_START,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "v0hZaKnVJsW3nvgPuPHs2Qk",
        }
    ),
    chunk(
        {
            "candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": 1209,
                "candidatesTokenCount": 12,
                "totalTokenCount": 1251,
                "cachedContentTokenCount": 1024,
                "thoughtsTokenCount": 30,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1209}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "v0hZaKnVJsW3nvgPuPHs2Qk",
        }
    ),
]
TEXT_STREAM_TEXT = "The capital of France is Paris — « Paris » 🇫🇷."

SIGNATURE = "CiQB0e2Kb1xAuS0H7/zuL+6Y2vS8lzA3sdfGOgF2oQ=="
MULTI_CALLS = [
    ("get_weather", {"location": "San Francisco, CA", "unit": "celsius"}),
    ("get_time", {"timezone": "America/Los_Angeles"}),
    ("lookup", {"query": "Zürich 🏔", "limit": 3, "tags": ["a", "b"]}),
]


def _call_part(name: str, args: dict[str, Any], signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if signature:
        part["thoughtSignature"] = signature
    return part


MULTI_CALL_STREAM = [
    chunk(
        {
            "candidates": [{"content": {"parts": [{"text": "Checking both."}], "role": "model"}, "index": 0}],
            "usageMetadata": _USAGE_START,
            "modelVersion": "gemini-2.5-flash",
        }
    ),
    chunk(
        {
            "candidates": [
                {"content": {"parts": [_call_part(*MULTI_CALLS[0], SIGNATURE)], "role": "model"}, "index": 0}
            ],
            "usageMetadata": _USAGE_START,
            "modelVersion": "gemini-2.5-flash",
        }
    ),
    chunk(
        {
            "candidates": [
                {
                    "content": {"parts": [_call_part(*MULTI_CALLS[1]), _call_part(*MULTI_CALLS[2])], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 41, "totalTokenCount": 161},
            "modelVersion": "gemini-2.5-flash",
        }
    ),
]

BLOCKED_PROMPT_STREAM = [
    chunk(
        {
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                ],
            },
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash",
        }
    )
]

BLOCKED_ANSWER_STREAM = [
    TEXT_STREAM[0],
    chunk(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": "SAFETY",
                    "index": 0,
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                    ],
                }
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13},
            "modelVersion": "gemini-2.5-flash",
        }
    ),
]
