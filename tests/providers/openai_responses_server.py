"""A loopback OpenAI Responses API server for tests, driven by recorded event sequences.

``POST /v1/responses`` checked the way the real API checks it (a bearer
key; ``model`` and ``input``; input items of the documented types:
messages whose content parts fit their role, ``function_call`` /
``function_call_output`` pairs, ``reasoning`` items with an id; function
tools; ``text.format``; a ``previous_response_id`` that names a stored
response), errors as ``{"error": {"message", "type", "param", "code"}}``,
and each streamed event as ``event:`` / ``data:`` lines. Replies come from
``tests/providers/recordings/openai_responses/`` (:func:`recording`).

    async with ResponsesServer() as server:
        server.push(Reply(events=recording("text")))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.providers.anthropic_server import Reply, ScriptedServer, events_of

__all__ = ["Reply", "ResponsesServer", "check_responses_body", "recording"]

RECORDINGS = Path(__file__).parent / "recordings" / "openai_responses"


def recording(name: str) -> list[str]:
    """The SSE blocks of a recorded stream."""
    return events_of((RECORDINGS / f"{name}.sse").read_text(encoding="utf-8"))


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


class ResponsesServer(ScriptedServer):
    """``POST /v1/responses`` as OpenAI serves it."""

    api_key = "sk-proj-loopback-responses-key-000000000000"

    def __init__(self) -> None:
        super().__init__()
        self.stored: set[str] = set()  # ids of responses sent with store: true

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/responses", self.handle)]

    def no_reply(self) -> web.Response:
        return _error(500, "no scripted reply left")

    def streaming(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def validate(self, request: web.Request, body: Any) -> web.Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return _error(400, f"Previous response with id '{previous}' not found.", "previous_response_id")
        problem = check_responses_body(body)
        if problem is not None:
            return _error(400, problem[1], problem[0])
        if body.get("store") is True and self.replies:  # the reply it will get is stored under its id
            for event in self.replies[0].events:
                if '"response.created"' in event:
                    data = json.loads(event.split("data: ", 1)[1])
                    self.stored.add(data["response"]["id"])
        return None


_USER_PARTS = {"input_text", "input_image", "input_file", "input_audio"}
_ASSISTANT_PARTS = {"output_text", "refusal"}


def check_responses_body(body: dict[str, Any]) -> tuple[str, str] | None:
    """What the real API would reject in ``body``, as (param, message), or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model", "Missing required parameter: 'model'."
    items = body.get("input")
    if isinstance(items, str):
        return None
    if not isinstance(items, list):
        return "input", "Invalid type for 'input': expected a string or an array of input items."
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        where = f"input[{i}]"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                return f"{where}.role", f"Invalid value: '{role}'. Supported values are: 'user', 'assistant', ..."
            content = item.get("content")
            parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
            allowed = _ASSISTANT_PARTS if role == "assistant" else _USER_PARTS
            for j, part in enumerate(parts or ()):
                if part.get("type") not in allowed:
                    return (
                        f"{where}.content[{j}]",
                        f"Invalid value: '{part.get('type')}'. Supported values are: {', '.join(sorted(allowed))}.",
                    )
                problem = _check_part(part, f"{where}.content[{j}]")
                if problem is not None:
                    return problem
        elif kind == "function_call":
            if not (item.get("call_id") and item.get("name") and isinstance(item.get("arguments"), str)):
                return where, "A function_call item needs call_id, name and arguments (a string)."
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            if item.get("call_id") not in calls and not body.get("previous_response_id"):
                return where, f"No tool call found for function call output with call_id {item.get('call_id')}."
            if not isinstance(item.get("output"), (str, list)):
                return f"{where}.output", "Missing required parameter: 'output'."
        elif kind == "reasoning":
            if not item.get("id") or not isinstance(item.get("summary"), list):
                return where, "A reasoning item needs its id and summary."
        else:
            return f"{where}.type", f"Invalid value: '{kind}'."
    for t, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") == "function" and (not tool.get("name") or "parameters" not in tool):
            return f"tools[{t}]", "A function tool needs a name and parameters."
    fmt = (body.get("text") or {}).get("format")
    if (
        isinstance(fmt, dict)
        and fmt.get("type") == "json_schema"
        and (not fmt.get("name") or not isinstance(fmt.get("schema"), dict))
    ):
        return "text.format", "Missing required parameter: 'text.format.name' or 'text.format.schema'."
    if "messages" in body:
        return "messages", "Unknown parameter: 'messages'."
    return None


def _check_part(part: dict[str, Any], where: str) -> tuple[str, str] | None:
    kind = part["type"]
    if kind == "input_image" and not (part.get("image_url") or part.get("file_id")):
        return where, "An input_image needs image_url or file_id."
    if kind == "input_file":
        if not (part.get("file_data") or part.get("file_url") or part.get("file_id")):
            return where, "An input_file needs file_data, file_url or file_id."
        if part.get("file_data") and not part.get("filename"):
            return where, "Missing required parameter: 'filename' (with file_data)."
        if part.get("file_data") and not str(part["file_data"]).startswith("data:"):
            return where, "file_data must be a data URL (data:<mime>;base64,...)."
    if kind == "input_audio" and not (part.get("input_audio") or {}).get("data"):
        return where, "An input_audio needs input_audio.data."
    return None
