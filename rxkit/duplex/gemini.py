"""Gemini Live (``BidiGenerateContent``) as a :class:`~rxkit.duplex.DuplexSession`.

One WebSocket to ``{base_url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent``
(key in ``x-goog-api-key``). Client messages: ``setup`` (model, audio
response modality, system instruction, tools, ``sessionResumption``, both
transcriptions), ``realtimeInput`` (``audio`` blobs ``audio/pcm;rate=16000``,
``activityStart`` / ``activityEnd`` when rxkit takes turns, ``video`` for
images), ``clientContent`` (text turns) and ``toolResponse``. Server
messages: ``setupComplete``, ``serverContent`` (``modelTurn`` parts with
``inlineData`` audio at 24 kHz, ``inputTranscription``,
``outputTranscription``, ``turnComplete``, ``interrupted``), ``toolCall``,
``toolCallCancellation``, ``usageMetadata``, ``goAway`` and
``sessionResumptionUpdate``. Shapes from googleapis/python-genai's live
module (camelCase on the wire).

A dropped connection, or a ``goAway`` (handled at once, before the server
cuts), reconnects with the latest resumption handle, so the server keeps the
conversation.

>>> GeminiLive("gemini-live-2.5-flash-preview", api_key="k").connect_url().endswith("BidiGenerateContent")
True
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from rxkit.duplex.session import DuplexSession
from rxkit.elements import (
    AudioFrame,
    ImageFrame,
    Interrupt,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    Transcript,
)
from rxkit.errors import register_secret
from rxkit.toolformats import to_gemini
from rxkit.types import Message, ToolCall, Usage

__all__ = ["GeminiLive"]

_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


class GeminiLive(DuplexSession):
    """A duplex session with a Gemini Live model; see the module docstring and :class:`DuplexSession`."""

    name = "gemini-live"
    price_source: str | None = "google"
    input_rate = 16000
    output_rate = 24000
    audio_prefix = b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
    audio_suffix = b'"}}}'

    def __init__(
        self,
        model: str = "gemini-live-2.5-flash-preview",
        *,
        base_url: str = "wss://generativelanguage.googleapis.com",
        api_key: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, base_url=base_url, api_key=api_key, **options)
        register_secret(api_key)
        self.resumption_handle: str | None = None
        self.go_away_time_left: str | None = None
        self._item = 0  # numbers the model's turns (Gemini names no items)
        self._user_text: list[str] = []
        self._turn_usage: Usage | None = None  # the usageMetadata of the turn completing

    def connect_url(self) -> str:
        return self.base_url + _PATH

    def connect_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key} if self.api_key else {}

    def setup_messages(self, resumed: bool) -> list[dict[str, Any]]:
        model = self.model if self.model.startswith("models/") else f"models/{self.model}"
        setup: dict[str, Any] = {
            "model": model,
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {"handle": self.resumption_handle} if self.resumption_handle else {},
        }
        if self.voice:
            setup["generationConfig"]["speechConfig"] = {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": self.voice}}
            }
        if self.instructions:
            setup["systemInstruction"] = {"parts": [{"text": self.instructions}]}
        if len(self.registry):
            setup["tools"] = to_gemini(self.registry.descriptors())
        if not self.server_vad:
            setup["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
        events: list[dict[str, Any]] = [{"setup": setup}]
        if resumed and not self.resumption_handle and self.history:
            # No handle (the server never sent one): seed the new session with the conversation so far.
            turns = [t for m in self.history if (t := _turn(m)) is not None]
            if turns:
                events.append({"clientContent": {"turns": turns, "turnComplete": False}})
        if not self.server_vad:
            events.append({"realtimeInput": {"activityStart": {}}})
        return events

    def text_messages(self, text: str) -> list[dict[str, Any]]:
        turn = {"role": "user", "parts": [{"text": text}]}
        return [{"clientContent": {"turns": [turn], "turnComplete": True}}]

    def image_messages(self, image: ImageFrame) -> list[dict[str, Any]]:
        blob = {"mimeType": image.mime_type, "data": base64.b64encode(image.data).decode("ascii")}
        return [{"realtimeInput": {"video": blob}}]

    def commit_messages(self) -> list[dict[str, Any]]:
        # The user's activity ends (the model answers); the next one starts at once.
        return [{"realtimeInput": {"activityEnd": {}}}, {"realtimeInput": {"activityStart": {}}}]

    def cancel_messages(self) -> list[dict[str, Any]]:
        # Gemini has no cancel: new user activity interrupts the model's turn.
        return [] if self.server_vad else [{"realtimeInput": {"activityStart": {}}}]

    def tool_result_messages(self, results: list[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
        responses = [{"id": c.id, "name": c.name, "response": {"output": out}} for c, out in results]
        return [{"toolResponse": {"functionResponses": responses}}]

    def handle(self, event: dict[str, Any]) -> None:
        meta = event.get("usageMetadata")
        if meta is not None:  # comes with the turnComplete it counts: booked before the turn ends
            self._usage(meta)
        content = event.get("serverContent")
        if content is not None:
            self._content(content)
        elif "toolCall" in event:
            self._model_turn_starts()
            for fc in event["toolCall"].get("functionCalls") or []:
                args = fc.get("args") or {}
                self.tool_call(ToolCall(id=fc.get("id") or fc["name"], name=fc["name"], arguments=json.dumps(args)))
            self.reply_done(None)  # the model waits for the tool responses: this part of its turn is over
        elif "toolCallCancellation" in event:  # the user talked over the model while its tools ran
            self.withdraw_tool_calls(list((event["toolCallCancellation"] or {}).get("ids") or []))
        elif "sessionResumptionUpdate" in event:
            update = event["sessionResumptionUpdate"]
            if update.get("resumable") and update.get("newHandle"):
                self.resumption_handle = update["newHandle"]
        elif "goAway" in event:
            self.go_away_time_left = (event["goAway"] or {}).get("timeLeft")
            self.reconnect_soon()
        elif "error" in event:
            error = event.get("error") or {}
            self.server_error(event, str(error.get("message", "")), str(error.get("status") or error.get("code") or ""))

    def _content(self, content: dict[str, Any]) -> None:
        emit = self.emit
        transcription = content.get("inputTranscription")
        if transcription is not None and transcription.get("text"):  # one with no text (finished) says nothing
            text = transcription["text"]
            if not self._user_text:
                emit(SpeechStarted())
            self._user_text.append(text)
            emit(Transcript(text, final=False))
        if content.get("interrupted"):
            emit(Interrupt("barge-in"))
            if self.reply_active:
                self.reply_done(None, "cancelled", run_tools=False)
        turn = content.get("modelTurn")
        if turn is not None:
            self._model_turn_starts()
            for part in turn.get("parts") or []:
                blob = part.get("inlineData")
                if blob is not None:
                    pcm = binascii.a2b_base64(blob["data"])
                    self.audio_received(f"turn-{self._item}", len(pcm))
                    emit(AudioFrame(pcm, 24000))
                elif "text" in part and not part.get("thought"):
                    emit(TextDelta(part["text"]))
        transcription = content.get("outputTranscription")
        if transcription is not None and transcription.get("text"):
            self._model_turn_starts()  # its transcription may come before its audio
            self.reply_text.append(transcription["text"])
            emit(ReplyTranscript(transcription["text"]))
        if content.get("turnComplete") and self.reply_active:
            usage, self._turn_usage = self._turn_usage, None
            self.reply_done(usage)

    def _model_turn_starts(self) -> None:
        """The model's output (audio, its transcription or a tool call): the user's turn that asked for it ends
        first; the first output of a turn opens the reply and numbers its item."""
        if not self.reply_active:
            self._end_user_turn()
            self.reply_started()
            self._item += 1

    def _end_user_turn(self) -> None:
        if self._user_text:
            text = "".join(self._user_text).strip()
            self._user_text = []
            self.user_speech_ended()
            self.emit(SpeechStopped())
            if text:
                self.user_transcript(text)
                self.emit(Transcript(text, final=True))

    def _usage(self, meta: dict[str, Any]) -> None:
        ins = _by_modality(meta.get("promptTokensDetails"))
        cached = _by_modality(meta.get("cacheTokensDetails"))  # part of the prompt's, read at the cached rate
        by = _by_modality(meta.get("responseTokensDetails"))
        thoughts = meta.get("thoughtsTokenCount") or 0  # billed as text output, as the text provider counts them
        self.book_cost(
            ins.get("TEXT", 0),
            ins.get("AUDIO", 0),
            by.get("TEXT", 0) + thoughts,
            by.get("AUDIO", 0),
            cached.get("TEXT", 0),
            cached.get("AUDIO", 0),
        )
        self._turn_usage = Usage(
            input_tokens=meta.get("promptTokenCount") or 0,
            output_tokens=(meta.get("responseTokenCount") or 0) + thoughts,
            cached_input_tokens=meta.get("cachedContentTokenCount") or 0,
            reasoning_tokens=thoughts,
        )


def _by_modality(details: list[dict[str, Any]] | None) -> dict[str, int]:
    """``[{"modality": "AUDIO", "tokenCount": 45}, ...]`` (``ModalityTokenCount``) -> ``{"AUDIO": 45, ...}``."""
    return {d.get("modality", ""): d.get("tokenCount") or 0 for d in details or []}


def _turn(message: Message) -> dict[str, Any] | None:
    if message.role in ("user", "assistant") and message.text:
        return {"role": "user" if message.role == "user" else "model", "parts": [{"text": message.text}]}
    return None
