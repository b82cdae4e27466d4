"""The local duplex peer: no key, real recorded speech, the embedded model, through duplex_graph("local").

The session is a LocalDuplex: pocketsphinx hears, the embedded SmolLM2 answers, espeak-ng speaks, all
behind the Realtime protocol on its own loopback server; rxkit's VAD and turn detector take the turns.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxkit.audio.wav import read_wav
from rxkit.elements import (
    AudioFrame,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    ReplyTranscript,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from rxkit.errors import ConfigError
from rxkit.graph import arun
from rxkit.graph.stage import Stage, StageKind
from rxkit.graphs import LocalDuplex, duplex_graph
from rxkit.graphs.duplex import duplex_session
from rxkit.operators import duplex
from rxkit.scheduling import from_async_iterable
from rxkit.state.memory import MemoryStore
from rxkit.telemetry.events import EventBus
from rxkit.testing import ano_leaks
from rxkit.types import ChatRequest
from tests.duplex.test_openai_realtime import fake_speaker

pytestmark = [pytest.mark.timeout(240), pytest.mark.local_model]


class Recording:
    """The embedded model's provider, with each request it was asked kept (what the server answered from)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.model = provider.model
        self.requests: list[ChatRequest] = []

    def stream(self, request: ChatRequest) -> Any:
        self.requests.append(request)
        return self.provider.stream(request)

    async def aclose(self) -> None:
        await self.provider.aclose()


def blocks(path: Path, ms: int = 20) -> list[AudioFrame]:
    pcm, step = read_wav(path).pcm, 16000 * 2 * ms // 1000
    return [AudioFrame(pcm[i : i + step], 16000) for i in range(0, len(pcm) - step + 1, step)]


def silence(ms: int, block_ms: int = 20) -> list[AudioFrame]:
    return [AudioFrame(bytes(16000 * 2 * block_ms // 1000), 16000) for _ in range(ms // block_ms)]


async def test_local_peer_hears_real_speech_and_answers_with_the_embedded_model(
    local_server: str, librivox: list[Path], tmp_path: Path
) -> None:
    from rxkit.providers.local import LocalProvider

    async with ano_leaks(5.0):  # the loopback server, its sockets, the engines' threads: all gone after
        provider = LocalProvider(base_url=local_server, defaults={"max_tokens": 24})
        try:
            session = duplex_session("local", provider=provider, bus=EventBus())
            assert isinstance(session, LocalDuplex)
            graph = duplex_graph(session, source=librivox[1], sink=tmp_path / "reply.wav")
            out: list[Any] = await graph.arun()
        finally:
            await provider.aclose()
    assert [x for x in out if isinstance(x, ErrorElement)] == []
    assert list(graph.nodes) == ["wav_source", "vad", "turn_detector", "duplex", "wav_sink", "heard"]
    kinds = [type(x) for x in out]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(Transcript) < kinds.index(EndOfTurn)
    heard = [x.text for x in out if isinstance(x, Transcript) and x.final]
    assert len(heard) == 1 and len(heard[0].split()) >= 3
    said = "".join(x.text for x in out if isinstance(x, ReplyTranscript))
    assert said.strip()  # the model's answer, spoken sentence by sentence
    assert [(m.role, m.text) for m in session.history] == [("user", heard[0]), ("assistant", said)]
    end = next(x for x in out if isinstance(x, EndOfTurn))
    assert end.response is not None and end.response.finish_reason == "completed"
    assert end.response.usage.output_tokens > 0 and session.cost.total == 0
    with wave.open(str(tmp_path / "reply.wav"), "rb") as w:  # the reply's audio, at the protocol's 24 kHz
        assert w.getframerate() == 24000 and w.getnframes() > 24000 * 0.3


async def test_local_peer_barge_in_truncates_at_the_played_position_and_saves_the_history_as_heard(
    local_server: str, librivox: list[Path]
) -> None:
    from rxkit.providers.local import LocalProvider

    provider = Recording(LocalProvider(base_url=local_server, defaults={"max_tokens": 60, "temperature": 0}))
    store = MemoryStore()
    replying = asyncio.Event()

    async def mic() -> AsyncIterator[AudioFrame]:
        for f in blocks(librivox[0]) + silence(1000):
            yield f
        await replying.wait()  # the reply is coming out of the speaker
        for f in blocks(librivox[2]) + silence(1000):  # the user talks over it
            yield f

    played = 0.4
    speaker = Stage("speaker", fake_speaker(played), StageKind.TRANSFORM)
    out: list[Any] = []
    try:
        async with ano_leaks(5.0):
            session = LocalDuplex(provider, store=store, session_id="talk", bus=EventBus())  # type: ignore[arg-type]
            graph = duplex_graph(session, source=from_async_iterable(mic), sink=speaker)
            async for x in graph.astream():
                out.append(x)
                if type(x) is AudioFrame:
                    replying.set()
    finally:
        await provider.aclose()
    assert [x for x in out if isinstance(x, ErrorElement)] == []
    heard = [x.text for x in out if isinstance(x, Transcript) and x.final]
    assert len(heard) == 2 and all(heard)
    # rxkit's turn detector heard the user start over the reply: Interrupt first, the reply cancelled
    barge_in = next(i for i, x in enumerate(out) if isinstance(x, Interrupt))
    started = [i for i, x in enumerate(out) if isinstance(x, SpeechStarted)]
    assert started[0] < barge_in < started[1]
    ends = [x.response.finish_reason for x in out if isinstance(x, EndOfTurn) and x.response is not None]
    assert ends == ["cancelled", "completed"]
    # what arrived before the barge-in was longer than what was played; the history keeps what was played
    reply_end = next(i for i, x in enumerate(out) if isinstance(x, EndOfTurn))
    full = "".join(x.text for x in out[:reply_end] if isinstance(x, ReplyTranscript))
    full_s = sum(x.duration for x in out[:reply_end] if type(x) is AudioFrame)
    first = next(m.text for m in session.history if m.role == "assistant")
    assert full_s > played and full.startswith(first) and 0 < len(first) < len(full)
    assert abs(len(first) / len(full) - played / full_s) < 0.25
    # the server's own copy was cut too: the second answer was asked of the conversation as heard
    second = [m.text for m in provider.requests[1].messages]
    assert second[0] == heard[0] and second[2] == heard[1]
    assert full.startswith(second[1]) and abs(len(second[1]) - len(first)) < 0.25 * len(full)
    # saved as heard, and the next session on the same store goes on from there
    assert [m.role for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert await store.load("talk") == session.history
    again = LocalDuplex(provider, store=store, session_id="talk", bus=EventBus())  # type: ignore[arg-type]
    more = await arun([Transcript("thanks")], through=duplex(again))
    assert [x for x in more if isinstance(x, ErrorElement)] == []
    asked = [m.text for m in provider.requests[-1].messages]
    assert asked == [*(m.text for m in session.history), "thanks"]  # said once, after the stored conversation
    assert [m.text for m in await store.load("talk")][:5] == [*asked[:4], "thanks"]


def test_local_peer_refuses_what_only_a_remote_peer_takes() -> None:
    with pytest.raises(ConfigError, match="server_vad"):
        LocalDuplex(server_vad=True)
    with pytest.raises(ConfigError, match="base_url"):
        duplex_session("local", base_url="ws://example.com")
    with pytest.raises(ConfigError, match="api_key"):
        duplex_session("local", api_key="sk-000")
