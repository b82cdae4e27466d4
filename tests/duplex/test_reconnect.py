"""A dropped connection is opened again and the conversation goes on: the same scenario for every peer.

OpenAI Realtime keeps no conversation across sockets: the new session is
seeded with the history. Gemini Live resumes with the last
``sessionResumptionUpdate`` handle: the server keeps it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rxkit.duplex import GeminiLive, OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply
from rxkit.elements import EndOfTurn, ReplyTranscript, Transcript
from rxkit.graph import astream
from rxkit.operators import duplex
from rxkit.scheduling import from_async_iterable
from rxkit.telemetry.events import EventBus
from tests.duplex import gemini_live_server

pytestmark = pytest.mark.timeout(60)


def _openai_resumed(server: Any) -> None:
    # the new server session was seeded with the conversation so far, then went on
    assert server.conversations[1][:2] == [
        {"role": "user", "text": "first question"},
        {"role": "assistant", "text": "First answer."},
    ]


def _gemini_resumed(server: Any) -> None:
    assert server.cut_by_server == 1
    assert server.setups[1]["sessionResumption"] == {"handle": "handle-1"}


@dataclass
class Peer:
    server: Callable[..., Any]
    session: Callable[[Any], Any]
    resumed: Callable[[Any], None]


PEERS = {
    "openai-realtime": Peer(
        RealtimeServer,
        lambda server: OpenAIRealtime("gpt-realtime", base_url=server.url, api_key=API_KEY, bus=EventBus()),
        _openai_resumed,
    ),
    "gemini-live": Peer(
        gemini_live_server.LiveServer,
        lambda server: GeminiLive(
            "gemini-live-2.5-flash-preview", base_url=server.url, api_key=gemini_live_server.API_KEY, bus=EventBus()
        ),
        _gemini_resumed,
    ),
}


@pytest.mark.parametrize("peer", list(PEERS))
async def test_a_dropped_connection_is_resumed_and_the_conversation_goes_on(peer: str) -> None:
    case = PEERS[peer]
    async with case.server(drop_after=1) as server:
        server.replies.extend([Reply(text="First answer.", audio_ms=100), Reply(text="Second answer.", audio_ms=100)])
        s = case.session(server)
        first_done = asyncio.Event()

        async def inputs() -> AsyncIterator[Any]:
            yield Transcript("first question")
            await first_done.wait()
            while s.connections < 2:
                await asyncio.sleep(0.01)
            yield Transcript("second question")

        out = []
        async for x in astream(from_async_iterable(inputs), through=duplex(s)):
            out.append(x)
            if isinstance(x, EndOfTurn):
                first_done.set()
        assert server.connections == 2
        case.resumed(server)
        assert "".join(x.text for x in out if isinstance(x, ReplyTranscript)) == "First answer.Second answer."
        assert [m.text for m in s.history] == ["first question", "First answer.", "second question", "Second answer."]
