"""OpenAI Realtime (the GA protocol) as a :class:`~rxkit.duplex.DuplexSession`.

One WebSocket to ``{base_url}/realtime?model=...`` (``Authorization: Bearer``).
Client events sent: ``session.update``, ``input_audio_buffer.append`` /
``commit``, ``response.create`` / ``cancel``, ``conversation.item.create`` /
``truncate``. Server events read: ``response.output_audio.delta`` (audio out),
``response.output_audio_transcript.delta`` and ``response.output_text.delta``,
``conversation.item.input_audio_transcription.delta`` / ``completed`` (the
user's side), ``input_audio_buffer.speech_started`` / ``speech_stopped``
(server VAD, barge-in), ``response.function_call_arguments.delta`` / ``done``,
``response.done`` (usage), ``rate_limits.updated`` (published on the bus as
:class:`~rxkit.telemetry.events.RateLimitsUpdated`) and ``error``. Shapes from
openai-python's ``types/realtime`` (GA names). PCM16 at 24 kHz both ways.

A reconnection opens a new session seeded with :attr:`history` (text items:
the server keeps no conversation across sockets).

>>> s = OpenAIRealtime("gpt-realtime", api_key="sk-test-000000000000")
>>> s.connect_url()
'wss://api.openai.com/v1/realtime?model=gpt-realtime'
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from rxkit.duplex.prices import AudioPrices
from rxkit.duplex.session import DuplexSession
from rxkit.elements import (
    AudioFrame,
    ImageFrame,
    Interrupt,
    ReplyStarted,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    ToolCallDelta,
    Transcript,
)
from rxkit.errors import MalformedEventError, register_secret
from rxkit.telemetry.events import RateLimit, RateLimitsUpdated
from rxkit.toolformats import to_openai
from rxkit.types import Message, ToolCall, Usage

__all__ = ["GPT_REALTIME_PRICES", "OpenAIRealtime"]

GPT_REALTIME_PRICES = AudioPrices(
    text_input=4.0, audio_input=32.0, cached_input=0.4, text_output=16.0, audio_output=64.0
)
"""gpt-realtime's published prices per million tokens (USD, August 2025), as genai-prices has them.

Sessions look their model's prices up themselves (:mod:`rxkit.duplex.prices`); this is for ``prices=``."""

_FATAL = frozenset({"invalid_api_key", "session_expired", "insufficient_quota"})


class OpenAIRealtime(DuplexSession):
    """A duplex session with an OpenAI Realtime model; see the module docstring and :class:`DuplexSession`."""

    name = "openai-realtime"
    price_source: str | None = "openai"
    input_rate = 24000
    output_rate = 24000
    audio_prefix = b'{"type":"input_audio_buffer.append","audio":"'
    audio_suffix = b'"}'

    def __init__(
        self,
        model: str = "gpt-realtime",
        *,
        base_url: str = "wss://api.openai.com/v1",
        api_key: str | None = None,
        transcription_model: str | None = "gpt-4o-mini-transcribe",
        prices: AudioPrices | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, base_url=_ws_url(base_url), api_key=api_key, prices=prices, **options)
        register_secret(api_key)
        self.transcription_model = transcription_model
        self.rate_limits: list[dict[str, Any]] = []
        self._calls: dict[str, str] = {}  # call_id -> name, while its arguments stream

    def connect_url(self) -> str:
        return f"{self.base_url}/realtime?model={self.model}"

    def connect_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def setup_messages(self, resumed: bool) -> list[dict[str, Any]]:
        audio_in: dict[str, Any] = {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": {"type": "server_vad", "create_response": True, "interrupt_response": True}
            if self.server_vad
            else None,
        }
        if self.transcription_model:
            audio_in["transcription"] = {"model": self.transcription_model}
        audio_out: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": 24000}}
        if self.voice:
            audio_out["voice"] = self.voice
        session: dict[str, Any] = {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "audio": {"input": audio_in, "output": audio_out},
        }
        if self.instructions:
            session["instructions"] = self.instructions
        if len(self.registry):
            session["tools"] = [_tool(t) for t in to_openai(self.registry.descriptors())]
            session["tool_choice"] = "auto"
        events: list[dict[str, Any]] = [{"type": "session.update", "session": session}]
        if resumed:  # a new server session: seed it with the conversation so far
            events += [item for m in self.history if (item := _item(m)) is not None]
        return events

    def text_messages(self, text: str) -> list[dict[str, Any]]:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return [{"type": "conversation.item.create", "item": item}, {"type": "response.create"}]

    def image_messages(self, image: ImageFrame) -> list[dict[str, Any]]:
        url = f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"
        item = {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": url}]}
        return [{"type": "conversation.item.create", "item": item}]

    def cancel_messages(self) -> list[dict[str, Any]]:
        return [{"type": "response.cancel"}]

    def commit_messages(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio_buffer.commit"}, {"type": "response.create"}]

    def discard_messages(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio_buffer.clear"}]

    def truncate_messages(self, item_id: str, audio_end_ms: int) -> list[dict[str, Any]]:
        return [
            {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}
        ]

    def tool_result_messages(self, results: list[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call.id, "output": output},
            }
            for call, output in results
        ]
        return [*events, {"type": "response.create"}]

    def fatal_error(self, event: dict[str, Any]) -> bool:
        return str((event.get("error") or {}).get("code") or "") in _FATAL

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        emit = self.emit
        if kind == "response.output_audio.delta":
            self.reply_started()
            pcm = binascii.a2b_base64(event["delta"])
            self.audio_received(event["item_id"], len(pcm))
            emit(AudioFrame(pcm, 24000))
        elif kind == "response.output_audio_transcript.delta":
            self.reply_started()
            self.reply_text.append(event["delta"])
            emit(ReplyTranscript(event["delta"]))
        elif kind == "response.output_text.delta":
            self.reply_started()
            self.reply_text.append(event["delta"])
            emit(TextDelta(event["delta"]))
        elif kind == "response.created":
            self.reply_started()
            emit(ReplyStarted(self._turn))
        elif kind == "response.done":
            self._response_done(event.get("response") or {})
        elif kind == "input_audio_buffer.speech_started":
            self.user_speech_started()
            if self.speaking:  # the user talks over the reply: flush what is queued
                emit(Interrupt("barge-in"))
            emit(SpeechStarted(event.get("audio_start_ms", 0) / 1000))
        elif kind == "input_audio_buffer.speech_stopped":
            self.user_speech_ended()
            emit(SpeechStopped(event.get("audio_end_ms", 0) / 1000))
        elif kind == "conversation.item.input_audio_transcription.delta":
            emit(Transcript(event.get("delta") or "", final=False))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.user_transcript(event["transcript"])
            emit(Transcript(event["transcript"], final=True))
        elif kind == "response.function_call_arguments.delta":
            self.reply_started()
            name = self._calls.setdefault(event["call_id"], "")
            emit(ToolCallDelta(event["call_id"], name, event["delta"]))
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self._calls[item.get("call_id", "")] = item.get("name", "")
        elif kind == "response.function_call_arguments.done":
            # openai-python's ResponseFunctionCallArgumentsDoneEvent has no name: it came with output_item.added
            name = self._calls.pop(event["call_id"], "")
            self.tool_call(ToolCall(id=event["call_id"], name=event.get("name") or name, arguments=event["arguments"]))
        elif kind == "rate_limits.updated":
            self.rate_limits = event["rate_limits"]
            limits = tuple(
                RateLimit(
                    str(r.get("name") or ""),
                    int(r.get("limit") or 0),
                    int(r.get("remaining") or 0),
                    float(r.get("reset_seconds") or 0.0),
                )
                for r in self.rate_limits  # every field is optional in openai-python's RateLimitsUpdatedEvent
            )
            self.bus.publish(RateLimitsUpdated(provider=self.name, model=self.model, limits=limits))
        elif kind == "error":
            error = event.get("error") or {}
            self.server_error(event, str(error.get("message", "")), str(error.get("code") or error.get("type") or ""))
        elif not isinstance(kind, str):
            raise MalformedEventError(
                f"{self.name}: a server event has no type", provider=self.name, line=str(event)[:200]
            )

    def _response_done(self, response: dict[str, Any]) -> None:
        if not self.reply_active:
            self.reply_started()
        usage = response.get("usage") or {}
        ins = usage.get("input_token_details") or {}
        outs = usage.get("output_token_details") or {}
        cached = ins.get("cached_tokens_details") or {}
        self.book_cost(
            ins.get("text_tokens") or 0,
            ins.get("audio_tokens") or 0,
            outs.get("text_tokens") or 0,
            outs.get("audio_tokens") or 0,
            cached.get("text_tokens") or 0,
            cached.get("audio_tokens") or 0,
        )
        total = Usage(
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            cached_input_tokens=ins.get("cached_tokens") or 0,
        )
        self.reply_done(total, str(response.get("status") or "completed"))


def _ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    return base_url


def _tool(chat_tool: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions tool (``{"type": "function", "function": {...}}``) as Realtime's flat one."""
    fn = chat_tool["function"]
    return {
        "type": "function",
        "name": fn["name"],
        "description": fn.get("description", ""),
        "parameters": fn["parameters"],
    }


def _item(message: Message) -> dict[str, Any] | None:
    """A history message as a ``conversation.item.create`` event (text only: what the user heard)."""
    if message.role == "user" and message.text:
        content = [{"type": "input_text", "text": message.text}]
    elif message.role == "assistant" and message.text:
        content = [{"type": "output_text", "text": message.text}]
    elif message.role == "system" and message.text:
        content = [{"type": "input_text", "text": message.text}]
    else:
        return None
    return {"type": "conversation.item.create", "item": {"type": "message", "role": message.role, "content": content}}
