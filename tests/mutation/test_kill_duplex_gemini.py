"""Pins down rxkit.duplex.gemini, Gemini Live's event handling and client messages (issues 15, 18).

Each server message is handed to ``GeminiLive.handle`` directly (no
socket): what goes out as elements, what the reply's bookkeeping becomes,
and the exact client messages built. Shapes as in googleapis/python-genai's
``types.py`` (``LiveServerMessage``, ``LiveClientMessage``; camelCase on
the wire); the loopback server and the recording run the same paths over a
socket (tests/duplex/test_gemini_live.py, test_recordings.py).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest

from rxkit.duplex import AudioPrices, GeminiLive
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    Interrupt,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    ToolCallElement,
    Transcript,
)
from rxkit.errors import RateLimitError, redact
from rxkit.telemetry.events import EventBus
from rxkit.tools import tool
from rxkit.types import Message, ToolCall

KEY = "AIzaSyKill-test-0123456789abcdefghijk"
PRICES = AudioPrices(text_input=1.0, audio_input=10.0, cached_input=0.5, text_output=2.0, audio_output=20.0)


class Live(GeminiLive):
    """Records the reconnections asked for (the socket's side is in test_gemini_live.py)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reconnects_asked = 0

    def reconnect_soon(self) -> None:
        self.reconnects_asked += 1


def session(**kw: Any) -> tuple[Live, list[Any]]:
    kw.setdefault("bus", EventBus())
    kw.setdefault("api_key", KEY)
    s = Live(**kw)
    out: list[Any] = []
    s.emit = out.append
    return s, out


def pcm_b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def audio(pcm: bytes) -> dict[str, Any]:
    return {
        "serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": pcm_b64(pcm)}}]}}
    }


def test_the_address_the_key_the_rates_and_the_audio_event() -> None:
    s, _ = session()
    assert s.connect_url() == (
        "wss://generativelanguage.googleapis.com"
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    assert s.connect_headers() == {"x-goog-api-key": KEY}
    assert GeminiLive(api_key=None).connect_headers() == {}
    assert GeminiLive(base_url="ws://127.0.0.1:9/", api_key=KEY).connect_url().startswith("ws://127.0.0.1:9/ws/google")
    assert (s.name, s.input_rate, s.output_rate, s.price_source) == ("gemini-live", 16000, 24000, "google")
    assert s.model == "gemini-live-2.5-flash-preview"
    assert s.audio_message(b"hi") == '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"aGk="}}}'
    assert (s.resumption_handle, s.go_away_time_left) == (None, None)


def test_the_key_is_registered_as_a_secret() -> None:
    key = "plaingeminisecret" + uuid.uuid4().hex  # the secret registry is global: a key of this test only
    assert key in redact(f"refused {key}")
    GeminiLive(api_key=key)
    assert key not in redact(f"refused {key}")


def test_the_setup_message_exactly() -> None:
    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return city

    s, _ = session(instructions="Be brief.", voice="Puck", tools=[get_time])
    (setup,) = s.setup_messages(resumed=False)
    tools = setup["setup"]["tools"]
    assert setup == {
        "setup": {
            "model": "models/gemini-live-2.5-flash-preview",
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}},
            },
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {},
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "tools": tools,
        }
    }
    assert tools[0]["functionDeclarations"][0]["name"] == "get_time"
    assert tools[0]["functionDeclarations"][0]["description"] == "The time in a city."
    bare, _ = session(model="models/gemini-2.0-flash-live-001", server_vad=False)
    assert bare.setup_messages(resumed=False) == [
        {
            "setup": {
                "model": "models/gemini-2.0-flash-live-001",
                "generationConfig": {"responseModalities": ["AUDIO"]},
                "inputAudioTranscription": {},
                "outputAudioTranscription": {},
                "sessionResumption": {},
                "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
            }
        },
        {"realtimeInput": {"activityStart": {}}},
    ]
    bare.resumption_handle = "h-1"
    assert bare.setup_messages(resumed=True)[0]["setup"]["sessionResumption"] == {"handle": "h-1"}


def test_a_resumed_session_without_a_handle_is_seeded_with_the_text_turns() -> None:
    history = [
        Message.system("Be kind."),
        Message.user("hi"),
        Message.assistant("hello"),
        Message.user(""),
        Message.tool("c1", "42", name="f"),
    ]
    s, _ = session(history=history, server_vad=False)
    assert s.setup_messages(resumed=True)[1:] == [
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "hello"}]}],
                "turnComplete": False,
            }
        },
        {"realtimeInput": {"activityStart": {}}},
    ]
    assert len(s.setup_messages(resumed=False)) == 2  # a first connection is never seeded
    s.resumption_handle = "h-2"  # the server keeps the conversation: no seed
    assert len(s.setup_messages(resumed=True)) == 2
    nothing, _ = session(history=[Message.system("only this")])
    assert len(nothing.setup_messages(resumed=True)) == 1  # no text turn to seed with
    assert len(session()[0].setup_messages(resumed=True)) == 1


def test_the_client_messages_exactly() -> None:
    s, _ = session()
    assert s.text_messages("hi") == [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}}
    ]
    png = b"\x89PNG\r\n"
    assert s.image_messages(ImageFrame(png, "image/png")) == [
        {"realtimeInput": {"video": {"mimeType": "image/png", "data": base64.b64encode(png).decode("ascii")}}}
    ]
    assert s.commit_messages() == [{"realtimeInput": {"activityEnd": {}}}, {"realtimeInput": {"activityStart": {}}}]
    assert s.cancel_messages() == []
    assert session(server_vad=False)[0].cancel_messages() == [{"realtimeInput": {"activityStart": {}}}]
    assert s.discard_messages() == [] and s.truncate_messages("turn-1", 100) == []
    calls = [(ToolCall(id="c1", name="f", arguments="{}"), "one"), (ToolCall(id="c2", name="g", arguments="{}"), "two")]
    assert s.tool_result_messages(calls) == [
        {
            "toolResponse": {
                "functionResponses": [
                    {"id": "c1", "name": "f", "response": {"output": "one"}},
                    {"id": "c2", "name": "g", "response": {"output": "two"}},
                ]
            }
        }
    ]


async def test_the_users_transcription_starts_and_the_models_turn_ends_the_users_turn() -> None:
    s, out = session()
    s.handle({"serverContent": {"inputTranscription": {}}})  # no text: not speech, and nothing to say
    s.handle({"serverContent": {"inputTranscription": {"text": "", "finished": True}}})
    assert out == []
    s.handle({"serverContent": {"inputTranscription": {"text": "What's"}}})
    s.handle({"serverContent": {"inputTranscription": {"text": " the time? "}}})
    assert out == [SpeechStarted(), Transcript("What's", final=False), Transcript(" the time? ", final=False)]
    assert not s.awaiting_reply
    out.clear()
    pcm = bytes(range(240)) * 20  # 4800 bytes: 100 ms at 24 kHz
    s.handle(audio(pcm))
    assert out[:3] == [SpeechStopped(), Transcript("What's the time?", final=True), AudioFrame(pcm, 24000)]
    assert type(out[2]) is AudioFrame and out[2].pcm == pcm and out[2].sample_rate == 24000
    assert len(out) == 3
    assert s.history == [Message.user("What's the time?")]
    assert s.reply_active and not s.awaiting_reply and s.reply_items == [["turn-1", 100]]
    s.handle(audio(pcm))  # the same turn: the same item
    assert s.reply_items == [["turn-1", 200]]
    assert s.history == [Message.user("What's the time?")]  # the user's turn ended once


async def test_a_users_turn_of_spaces_stops_the_speech_without_a_transcript() -> None:
    s, out = session()
    s.handle({"serverContent": {"inputTranscription": {"text": " "}}})
    assert out == [SpeechStarted(), Transcript(" ", final=False)]
    s.handle({"serverContent": {"outputTranscription": {"text": "Yes?"}}})  # before the reply's audio
    s.handle({"serverContent": {"modelTurn": {"parts": []}}})
    assert out[2:] == [SpeechStopped(), ReplyTranscript("Yes?")]
    s2, out2 = session()
    s2.handle({"serverContent": {"inputTranscription": {"text": " "}}})
    s2.handle({"serverContent": {"modelTurn": {}}})
    assert out2[2:] == [SpeechStopped()]
    assert s2.history == [] and s2.reply_active


async def test_the_server_vads_turn_awaits_a_reply_and_rxkits_does_not() -> None:
    s, _ = session(server_vad=True)
    s.handle({"serverContent": {"inputTranscription": {"text": "hi"}}})
    s.handle({"toolCall": {"functionCalls": []}})
    assert s.history[0] == Message.user("hi")
    s2, _ = session(server_vad=False)
    s2.handle({"serverContent": {"inputTranscription": {"text": "hi"}}})
    s2.handle({"serverContent": {"modelTurn": {"parts": []}}})
    assert s2.reply_active and not s2.awaiting_reply


async def test_each_model_turn_is_an_item_of_its_own() -> None:
    s, out = session()
    pcm = b"\x01\x00" * 2400  # 100 ms
    s.handle(audio(pcm))
    s.handle({"serverContent": {"turnComplete": True}})
    s.handle(audio(pcm + pcm))
    assert s.reply_items == [["turn-2", 200]]
    s.handle({"serverContent": {"modelTurn": {"parts": [{"text": "thinking", "thought": True}, {"text": "Hi"}]}}})
    assert out[-1] == TextDelta("Hi") and type(out[-1]) is TextDelta
    assert [type(x) for x in out] == [AudioFrame, EndOfTurn, AudioFrame, TextDelta]
    with pytest.raises(KeyError):
        s.handle({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm"}}]}}})


async def test_output_transcription_opens_the_reply_and_turn_complete_ends_it_with_its_usage() -> None:
    s, out = session(prices=PRICES)
    s.handle({"serverContent": {"outputTranscription": {}}})
    s.handle({"serverContent": {"outputTranscription": {"text": ""}}})
    assert out == [] and not s.reply_active
    s.handle({"serverContent": {"outputTranscription": {"text": "It is"}}})
    assert s.reply_active and s.reply_text == ["It is"]
    s.handle({"serverContent": {"outputTranscription": {"text": " noon."}}})
    assert out == [ReplyTranscript("It is"), ReplyTranscript(" noon.")] and type(out[0]) is ReplyTranscript
    usage = {
        "promptTokenCount": 120,
        "responseTokenCount": 50,
        "cachedContentTokenCount": 30,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40}, {"modality": "AUDIO", "tokenCount": 80}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 10}, {"modality": "AUDIO", "tokenCount": 20}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 45}, {"modality": "TEXT", "tokenCount": 5}],
    }
    s.handle({"usageMetadata": usage})  # on its own: the turn is not over
    assert s.reply_active
    s.handle({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
    end = out[-1]
    assert isinstance(end, EndOfTurn) and end.response is not None
    r = end.response
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_input_tokens) == (120, 50, 30)
    assert r.finish_reason == "completed" and r.message.text == "It is noon."
    assert r.model == "gemini-live-2.5-flash-preview" and r.provider == "gemini-live"
    assert r.cost is not None
    # cached tokens are part of the prompt's: priced at the cached rate, the rest at the full one
    assert r.cost.input_cost == pytest.approx(((40 - 10) * 1.0 + (80 - 20) * 10.0) / 1e6)
    assert r.cost.cached_input_cost == pytest.approx((10 + 20) * 0.5 / 1e6)
    assert r.cost.output_cost == pytest.approx((5 * 2.0 + 45 * 20.0) / 1e6)
    assert not s.reply_active and s.history[-1] == Message.assistant("It is noon.")
    assert s.usage.input_tokens == 120 and s.cost.total == pytest.approx(r.cost.total)
    s.handle({"serverContent": {"turnComplete": True}})  # no reply in flight: nothing to end
    assert out[-1] is end
    s.handle({"serverContent": {"outputTranscription": {"text": "Next."}}})
    s.handle({"serverContent": {"turnComplete": True}})  # its usage was not sent: none, not the last turn's
    last = out[-1].response
    assert last.usage.input_tokens == 0 and last.message.text == "Next."


async def test_thinking_tokens_are_output_and_missing_counts_are_zero() -> None:
    s, out = session(prices=PRICES)
    s.handle({"serverContent": {"outputTranscription": {"text": "A"}}})
    usage = {
        "promptTokenCount": 10,
        "responseTokenCount": 20,
        "thoughtsTokenCount": 7,
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 20}],
    }
    s.handle({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
    r = out[-1].response
    assert (r.usage.output_tokens, r.usage.reasoning_tokens) == (27, 7)
    assert r.cost.output_cost == pytest.approx((7 * 2.0 + 20 * 20.0) / 1e6)
    assert (r.cost.input_cost, r.cost.cached_input_cost) == (0.0, 0.0)  # no prompt details: no input priced
    s.handle({"serverContent": {"outputTranscription": {"text": "B"}}})
    nothing = {
        "promptTokenCount": None,
        "promptTokensDetails": [{"modality": "TEXT"}, {"tokenCount": 3}],
        "responseTokensDetails": None,
        "cacheTokensDetails": [{"modality": "AUDIO"}],
    }
    s.handle({"serverContent": {"turnComplete": True}, "usageMetadata": nothing})
    r = out[-1].response
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_input_tokens) == (0, 0, 0)
    assert (r.cost.input_cost, r.cost.cached_input_cost, r.cost.output_cost) == (0.0, 0.0, 0.0)
    s.handle({"serverContent": {"outputTranscription": {"text": "C"}}})
    s.handle({"serverContent": {"turnComplete": True}, "usageMetadata": {}})
    assert out[-1].response.usage.total_tokens == 0


async def test_interrupted_cancels_the_reply_and_keeps_what_came() -> None:
    s, out = session()
    s.handle({"serverContent": {"interrupted": False}})
    assert out == []
    s.handle({"serverContent": {"interrupted": True}})  # no reply in flight: only the barge-in
    assert out == [Interrupt("barge-in")]
    s.handle({"serverContent": {"outputTranscription": {"text": "Once upon"}}})
    s.handle({"serverContent": {"interrupted": True}})
    assert out[2] == Interrupt("barge-in") and isinstance(out[3], EndOfTurn) and len(out) == 4
    assert out[3].response.finish_reason == "cancelled" and out[3].response.message.text == "Once upon"
    assert not s.reply_active


async def test_an_interrupted_reply_does_not_run_its_tool_calls() -> None:
    ran: list[str] = []

    @tool
    def f() -> str:
        """F."""
        ran.append("f")
        return "x"

    s, _ = session(tools=[f])
    s.handle({"serverContent": {"outputTranscription": {"text": "Let me see"}}})
    s.reply_calls.append(ToolCall(id="c1", name="f", arguments="{}"))
    s.handle({"serverContent": {"interrupted": True}})
    await asyncio.sleep(0.05)
    assert ran == [] and s.idle


async def test_a_tool_call_ends_the_users_turn_and_is_run_and_answered() -> None:
    @tool
    def lookup(topic: str) -> str:
        """Look it up."""
        return f"facts about {topic}"

    s, out = session(tools=[lookup])
    s.handle({"serverContent": {"inputTranscription": {"text": "owls?"}}})
    out.clear()
    call = {"id": "function-call-7", "name": "lookup", "args": {"topic": "owls"}}
    s.handle({"toolCall": {"functionCalls": [call, {"name": "lookup"}]}})
    assert out[:2] == [SpeechStopped(), Transcript("owls?", final=True)]
    assert out[2:4] == [
        ToolCallElement(ToolCall(id="function-call-7", name="lookup", arguments='{"topic": "owls"}')),
        ToolCallElement(ToolCall(id="lookup", name="lookup", arguments="{}")),  # no id: named by the function
    ]
    (end,) = out[4:]
    assert isinstance(end, EndOfTurn) and end.response.finish_reason == "completed"
    assert end.response.message.tool_calls is not None and len(end.response.message.tool_calls) == 2
    assert not s.reply_active
    for _ in range(200):
        if s.outbox.items:
            break
        await asyncio.sleep(0.01)
    import orjson

    (sent,) = [orjson.loads(x) for x in s.outbox.items if isinstance(x, str)]
    assert sent["toolResponse"]["functionResponses"][0] == {
        "id": "function-call-7",
        "name": "lookup",
        "response": {"output": "facts about owls"},
    }
    assert s.awaiting_reply


async def test_a_tool_call_in_a_reply_in_flight_is_part_of_it() -> None:
    s, out = session()
    s.handle({"serverContent": {"outputTranscription": {"text": "Checking."}}})
    s.handle({"serverContent": {"inputTranscription": {"text": "late words"}}})  # heard while it speaks
    out.clear()
    s.handle({"toolCall": {"functionCalls": None}})
    (end,) = out  # the user's turn is not ended by it: the reply was in flight
    assert isinstance(end, EndOfTurn) and end.response.message.text == "Checking."
    s.handle({"toolCall": {}})
    assert isinstance(out[-1], EndOfTurn) and out[-1].response.message.text == ""
    assert out[-3:-1] == [SpeechStopped(), Transcript("late words", final=True)]


def test_a_function_call_without_a_name_is_malformed() -> None:
    s, _ = session()
    with pytest.raises(KeyError):
        s.handle({"toolCall": {"functionCalls": [{"id": "c1"}]}})


def test_resumption_handles_are_kept_only_when_resumable() -> None:
    s, out = session()
    s.handle({"sessionResumptionUpdate": {"newHandle": "h-1", "resumable": True}})
    assert s.resumption_handle == "h-1"
    s.handle({"sessionResumptionUpdate": {"newHandle": "h-2", "resumable": False}})
    s.handle({"sessionResumptionUpdate": {"resumable": True}})
    s.handle({"sessionResumptionUpdate": {"newHandle": "", "resumable": True}})
    s.handle({"sessionResumptionUpdate": {"newHandle": "h-3"}})
    assert s.resumption_handle == "h-1" and out == []


def test_go_away_keeps_the_time_left_and_reconnects_at_once() -> None:
    s, out = session()
    s.handle({"goAway": {"timeLeft": "10s"}})
    assert s.go_away_time_left == "10s" and s.reconnects_asked == 1
    s.handle({"goAway": None})
    assert s.go_away_time_left is None and s.reconnects_asked == 2
    s.handle({"goAway": {}})
    assert s.go_away_time_left is None and s.reconnects_asked == 3 and out == []


def test_other_messages_change_nothing() -> None:
    s, out = session()
    s.handle({"setupComplete": {}})
    s.handle({"toolCallCancellation": {"ids": ["c1"]}})
    s.handle({"serverContent": {"generationComplete": True}})
    assert out == [] and not s.reply_active and s.reconnects_asked == 0 and s.resumption_handle is None


def test_error_messages_are_typed_with_their_status_or_code() -> None:
    s, out = session()
    s.handle({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}})
    s.handle({"error": {"code": 400, "message": "bad"}})
    s.handle({"error": {"code": 429}})
    s.handle({"error": None})
    errors = [x.error for x in out if isinstance(x, ErrorElement)]
    assert len(errors) == 4
    assert isinstance(errors[0], RateLimitError)
    assert str(errors[0]) == "gemini-live: server error (RESOURCE_EXHAUSTED): quota"
    assert str(errors[1]) == "gemini-live: server error (400): bad" and not isinstance(errors[1], RateLimitError)
    assert isinstance(errors[2], RateLimitError) and str(errors[2]) == "gemini-live: server error (429): "
    assert str(errors[3]) == "gemini-live: server error: "
    assert all(x.stage == "gemini-live" for x in out)


async def test_the_next_users_turn_is_heard_after_the_last_one_ended() -> None:
    s, out = session()
    s.handle({"serverContent": {"inputTranscription": {"text": "one"}}})
    s.handle({"serverContent": {"outputTranscription": {"text": "Yes."}}})
    s.handle({"serverContent": {"turnComplete": True}})
    out.clear()
    s.handle({"serverContent": {"inputTranscription": {"text": "two"}}})
    s.handle({"serverContent": {"modelTurn": {"parts": []}}})
    assert out == [SpeechStarted(), Transcript("two", final=False), SpeechStopped(), Transcript("two", final=True)]
    assert [m.text for m in s.history] == ["one", "Yes.", "two"]


async def test_tool_call_cancellation_withdraws_the_calls_it_names() -> None:
    cancelled: list[str] = []

    @tool
    async def book(seat: str) -> str:
        """Book a seat."""
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(seat)
            raise
        return "booked"

    s, _ = session(tools=[book])
    s.handle({"toolCall": {"functionCalls": [{"id": "c1", "name": "book", "args": {"seat": "12A"}}]}})
    await asyncio.sleep(0.01)
    for empty in ({"toolCallCancellation": None}, {"toolCallCancellation": {}}, {"toolCallCancellation": {"ids": []}}):
        s.handle(empty)  # names nothing: nothing withdrawn
    await asyncio.sleep(0.01)
    assert cancelled == []
    s.handle({"toolCallCancellation": {"ids": ["c1"]}})
    for _ in range(200):
        if s.idle:
            break
        await asyncio.sleep(0.01)
    assert cancelled == ["12A"] and s.idle and not s.outbox.items  # nothing answered
    assert [m.tool_results[0].call_id for m in s.history if m.role == "tool"] == ["c1"]
