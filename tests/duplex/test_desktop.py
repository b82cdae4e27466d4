"""The duplex graph on the PulseAudio virtual devices: real recorded speech into the mic, the loopback
Realtime server's audio out of the speaker, a barge-in that stops playback, the history saved as heard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.duplex import OpenAIRealtime
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply
from rxkit.elements import EndOfTurn, Interrupt, PlaybackFinished, PlaybackStarted, Transcript
from rxkit.graphs import duplex_graph
from rxkit.telemetry.events import EventBus
from rxkit.testing import ano_leaks
from tests.audio.pulse import PulseAudio, nonsilent_seconds, os_threads, threads_back_to, wait_for

pytestmark = [pytest.mark.audio, pytest.mark.timeout(120)]


@pytest.mark.audio
async def test_desktop_barge_in_stops_the_speaker_and_truncates_at_what_played(
    pulse: PulseAudio, librivox: list[Any]
) -> None:
    long = "This answer is long enough to be talked over and nobody should hear its end " * 2
    baseline = os_threads()
    async with RealtimeServer() as server:
        server.transcripts.extend(["he was not an ill disposed young man", "stop"])
        server.replies.extend([Reply(text=long.strip(), audio_ms=6000), Reply(text="Ok.", audio_ms=300)])
        session = OpenAIRealtime(base_url=server.url, api_key=API_KEY, bus=EventBus())
        out: list[Any] = []
        errors: list[Exception] = []
        async with ano_leaks():
            graph = duplex_graph(session)  # the default mic and speaker: the virtual devices
            sub = graph(reactivex.empty()).subscribe(
                out.append, errors.append, scheduler=AsyncIOScheduler(asyncio.get_running_loop())
            )
            try:
                await wait_for(lambda: session.connections == 1, 10, "the session to connect")
                mark = pulse.capture_position()
                await pulse.play_into_mic(librivox[1])
                await wait_for(lambda: any(isinstance(x, PlaybackStarted) for x in out) or errors, 20, "the reply")
                await asyncio.sleep(1.0)  # a second of the reply is heard, then the user talks over it
                await pulse.play_into_mic(librivox[2])
                await wait_for(lambda: server.truncated or errors, 20, "the truncation")
                await wait_for(lambda: len([x for x in out if isinstance(x, EndOfTurn)]) >= 2 or errors, 20, "turn 2")
                await asyncio.sleep(0.5)  # the monitor recorder's own latency
                played = pulse.captured_since(mark)
            finally:
                sub.dispose()
            await threads_back_to(baseline)  # mic and speaker streams closed
    assert not errors, errors
    assert server.closed_connections == 1
    assert [x.text for x in out if isinstance(x, Transcript) and x.final][:2] == [
        "he was not an ill disposed young man",
        "stop",
    ]
    assert len([x for x in out if isinstance(x, Interrupt)]) == 1
    cut = next(x for x in out if isinstance(x, PlaybackFinished) and x.interrupted)
    assert 0.8 < cut.played_s < 3.0  # about a second, then the barge-in: far from the 6 s sent
    # the model's item was truncated at what the speaker had played, and the history agrees
    assert server.truncated[0][1] == int(cut.played_s * 1000)
    first_reply = next(m.text for m in session.history if m.role == "assistant")
    assert first_reply and long.startswith(first_reply) and len(first_reply) < len(long) * 0.6
    # the speaker went quiet at the barge-in: what came out of it is the cut reply, then the short second one
    assert nonsilent_seconds(played) == pytest.approx(cut.played_s + 0.3, abs=0.4)
