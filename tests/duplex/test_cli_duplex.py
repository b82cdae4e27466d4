"""``rxkit voice --duplex`` on WAV files against the loopback Realtime server (run on its own loop thread)."""

from __future__ import annotations

import asyncio
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxkit.audio.wav import write_wav
from rxkit.cli import main
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply, tone
from rxkit.elements import AudioFrame

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[RealtimeServer]:
    loop = asyncio.new_event_loop()
    srv = RealtimeServer()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(srv.__aenter__(), loop).result(10)
    try:
        yield srv
    finally:
        asyncio.run_coroutine_threadsafe(srv.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_voice_duplex_on_files(server: RealtimeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    server.transcripts.append("what is two plus two")
    server.replies.append(Reply(text="Two plus two is four.", audio_ms=400))
    question, reply = tmp_path / "question.wav", tmp_path / "reply.wav"
    write_wav(question, AudioFrame(tone(400, 16000) + bytes(16000 * 2), 16000))  # 0.4 s of "speech", 1 s of silence
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    argv = ["voice", "--duplex", "--provider", "openai-realtime", "--base-url", server.url]
    status = main([*argv, "--input", str(question), "--output", str(reply)])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert out.out == "you: what is two plus two\nassistant: Two plus two is four.\n"
    with wave.open(str(reply), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (24000, 1, 24000 * 400 // 1000)
    assert server.closed_connections == 1


def test_voice_duplex_rejects_an_unknown_peer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["voice", "--duplex", "--provider", "openai", "--input", str(tmp_path / "q.wav")])
    assert status == 2
    assert "openai-realtime, gemini-live, local" in capsys.readouterr().err
