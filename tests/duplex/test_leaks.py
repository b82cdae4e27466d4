"""Nothing outlives a duplex graph: after completion, disposal or an error, no thread, task, socket or child
process is left (psutil, through rxkit.testing.ano_leaks), and the server saw its socket close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import reactivex

from rxkit.audio.wav import write_wav
from rxkit.duplex import OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply, tone
from rxkit.elements import AudioFrame, EndOfTurn, Transcript
from rxkit.errors import StreamInterruptedError
from rxkit.graph import astream
from rxkit.graphs import LocalDuplex, duplex_graph
from rxkit.operators import duplex
from rxkit.providers.mock import MockProvider
from rxkit.telemetry.events import EventBus
from rxkit.testing import ano_leaks

pytestmark = pytest.mark.timeout(60)


def realtime(server: RealtimeServer, **kw: Any) -> OpenAIRealtime:
    return OpenAIRealtime(base_url=server.url, api_key=API_KEY, bus=EventBus(), **kw)


def question(path: Path) -> Path:
    write_wav(path, AudioFrame(tone(400, 16000) + bytes(16000 * 2), 16000))  # 0.4 s of "speech", 1 s of silence
    return path


async def test_a_completed_duplex_graph_leaves_nothing(tmp_path: Path) -> None:
    async with RealtimeServer() as server:
        server.replies.append(Reply(text="Done.", audio_ms=300))
        async with ano_leaks():
            graph = duplex_graph(realtime(server), source=question(tmp_path / "q.wav"), sink=tmp_path / "r.wav")
            out = await graph.arun()
        assert [type(x) for x in out].count(EndOfTurn) == 1
        assert server.closed_connections == 1


async def test_a_failed_duplex_graph_leaves_nothing(tmp_path: Path) -> None:
    async with RealtimeServer(cut_mid_reply=True) as server:
        server.replies.append(Reply(audio_ms=2000))
        async with ano_leaks():
            graph = duplex_graph(
                realtime(server, reconnects=0), source=question(tmp_path / "q.wav"), sink=tmp_path / "r.wav"
            )
            with pytest.raises(StreamInterruptedError):
                await graph.arun()
        assert server.closed_connections == 1


async def test_the_local_peer_disposed_mid_reply_leaves_nothing(tmp_path: Path) -> None:
    """Its loopback server, its sockets, the speech engines' worker threads: all gone with the subscription."""
    long = "This reply is long. It has many sentences. Each is spoken in turn. Nobody hears the end of it."
    async with ano_leaks(5.0):
        session = LocalDuplex(MockProvider([long]), bus=EventBus())
        source = reactivex.concat(reactivex.of(Transcript("talk")), reactivex.never())
        async for x in astream(source, through=duplex(session)):
            if type(x) is AudioFrame:
                break  # leaving the loop disposes the graph mid-reply
    assert session.connections == 1 and session.client.closed


async def test_the_local_peer_completed_leaves_nothing() -> None:
    async with ano_leaks(5.0):
        session = LocalDuplex(MockProvider(["Fine, thanks."]), bus=EventBus())
        out = [x async for x in astream([Transcript("how are you")], through=duplex(session))]
    assert [m.text for m in session.history] == ["how are you", "Fine, thanks."]
    assert sum(x.duration for x in out if type(x) is AudioFrame) > 0.3


async def test_the_local_server_refuses_a_wrong_key_and_answers_bad_events_with_error_events() -> None:
    import aiohttp

    from rxkit.audio.stt import PocketSphinxSTT
    from rxkit.audio.tts import Pyttsx3TTS
    from rxkit.graphs import LocalRealtimeServer

    with PocketSphinxSTT() as stt, Pyttsx3TTS() as tts:
        async with ano_leaks():
            server = LocalRealtimeServer(MockProvider(["Hi."]), stt, tts, api_key="right-key-0123")
            url = await server.start()
            try:
                async with aiohttp.ClientSession() as http:
                    wrong = {"Authorization": "Bearer wrong"}
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await http.ws_connect(url + "/realtime?model=local", headers=wrong)
                    assert refused.value.status == 401
                    right = {"Authorization": "Bearer right-key-0123"}
                    async with http.ws_connect(url + "/realtime?model=local", headers=right) as ws:
                        assert (await ws.receive_json())["type"] == "session.created"
                        sent = [
                            {"type": "input_audio_buffer.commit"},
                            {"type": "response.cancel"},
                            {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                             "audio_end_ms": 10},
                            {"type": "conversation.item.create", "item": {"type": "function_call_output"}},
                            {"type": "no.such.event"},
                            {"type": "input_audio_buffer.append"},
                        ]  # fmt: skip
                        codes = []
                        for event in sent:
                            await ws.send_json(event)
                            answer = await ws.receive_json()
                            assert answer["type"] == "error", answer
                            codes.append(answer["error"]["code"])
                        assert codes == [
                            "input_audio_buffer_commit_empty",
                            "response_cancel_not_active",
                            "invalid_value",
                            "invalid_value",
                            "invalid_value",
                            "invalid_request",
                        ]
            finally:
                await server.stop()
