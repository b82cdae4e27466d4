"""``rxkit voice --duplex`` on WAV files against the loopback Realtime server (run on its own loop thread),
on the PulseAudio virtual devices, and with the local peer; in process (``main``) and as the console script."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rxkit.audio.wav import write_wav
from rxkit.cli import main
from rxkit.duplex.loopback import API_KEY, RealtimeServer, Reply, tone
from rxkit.elements import AudioFrame
from rxkit.state.sqlite import SQLiteStore
from tests.audio.pulse import PulseAudio, wait_for

pytestmark = pytest.mark.timeout(60)

RXKIT = Path(sys.executable).with_name("rxkit")
ROOT = Path(__file__).resolve().parents[2]
LONG = "This answer goes on for a long time so that it can be cut short in the middle " * 3


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user whose only key is the loopback server's (PULSE_SERVER kept, if a test set it)."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RXKIT_")}
    return {**clean, "XDG_DATA_HOME": str(tmp_path / "data"), "OPENAI_API_KEY": API_KEY}


def question(path: Path) -> Path:
    write_wav(path, AudioFrame(tone(400, 16000) + bytes(16000 * 2), 16000))  # 0.4 s of "speech", 1 s of silence
    return path


async def load(db: Path, session: str) -> list[Any]:
    store = SQLiteStore(db)
    try:
        return await store.load(session)
    finally:
        await store.aclose()


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


def test_voice_duplex_saves_to_the_session_store_and_the_next_run_goes_on_from_it(
    server: RealtimeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server.transcripts.extend(["what is two plus two", "and three more"])
    server.replies.extend([Reply(text="Two plus two is four.", audio_ms=300), Reply(text="Seven.", audio_ms=200)])
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    db, q = tmp_path / "state.db", question(tmp_path / "question.wav")
    argv = ["voice", "--duplex", "--base-url", server.url, "--input", str(q), "--output", str(tmp_path / "r.wav")]
    assert main([*argv, "--session", "maths", "--db", str(db)]) == 0, capsys.readouterr().err
    first = [(m.role, m.text) for m in asyncio.run(load(db, "maths"))]
    assert first == [("user", "what is two plus two"), ("assistant", "Two plus two is four.")]
    assert main([*argv, "--session", "maths", "--db", str(db)]) == 0, capsys.readouterr().err
    # the second run's server session was seeded with the first run's conversation, then heard the new turn
    assert [(m["role"], m["text"]) for m in server.conversations[-1]] == [
        *first,
        ("user", "and three more"),
        ("assistant", "Seven."),
    ]
    assert [m.text for m in asyncio.run(load(db, "maths"))][2:] == ["and three more", "Seven."]
    assert server.closed_connections == 2


async def _interrupt_mid_reply(proc: asyncio.subprocess.Process, server: RealtimeServer) -> tuple[bytes, bytes]:
    """SIGINT once the reply is being written to the terminal; returns (stdout, stderr) after the exit."""
    assert proc.stdout is not None
    you = await asyncio.wait_for(proc.stdout.readline(), 60)
    reply = await asyncio.wait_for(proc.stdout.readexactly(len("assistant: This answer")), 30)
    await asyncio.sleep(0.3)  # the reply streams (paced) for seconds more: Ctrl-C lands in the middle of it
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 30)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    await wait_for(lambda: server.closed_connections == 1, 10, "the server to see the socket close")
    assert server.connections == 1
    return you + reply + rest, err


async def test_ctrl_c_mid_reply_on_files_exits_as_voice_mode_does_and_closes_the_socket(
    server: RealtimeServer, tmp_path: Path, env: dict[str, str]
) -> None:
    server.replies.append(Reply(text=LONG, audio_ms=8000, pace_s=0.05))  # 8 s of reply, streamed over 4 s
    q = question(tmp_path / "question.wav")
    proc = await asyncio.create_subprocess_exec(
        str(RXKIT), "voice", "--duplex", "--base-url", server.url, "--input", str(q), "--realtime",
        "--output", str(tmp_path / "reply.wav"), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await _interrupt_mid_reply(proc, server)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err.decode()  # as rxkit voice on files: interrupted, not finished
    assert b"Traceback" not in err
    assert out.startswith(b"you: hello\nassistant: This answer")
    assert server.closed_connections == server.connections == 1


@pytest.mark.audio
async def test_live_duplex_exits_cleanly_on_ctrl_c_mid_reply_and_closes_the_socket(
    pulse: PulseAudio, server: RealtimeServer, env: dict[str, str], librivox: list[Path]
) -> None:
    server.transcripts.append("he was not an ill disposed young man")
    server.replies.append(Reply(text=LONG, audio_ms=8000, pace_s=0.05))
    devices = {k: v for k, v in pulse.env().items() if k.startswith("PULSE_")}
    proc = await asyncio.create_subprocess_exec(
        str(RXKIT), "voice", "--duplex", "--base-url", server.url, env=env | devices, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        banner = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"listening on" in banner, banner
        await wait_for(lambda: server.connections == 1, 20, "the session to connect")
        await asyncio.sleep(0.5)  # the mic stream opens with the graph
        await pulse.play_into_mic(librivox[1])
        out, err = await _interrupt_mid_reply(proc, server)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()  # Ctrl-C is how a live conversation ends
    assert b"Traceback" not in err
    assert out.startswith(b"you: he was not an ill disposed young man\nassistant: This answer"), out


@pytest.mark.local_model
@pytest.mark.timeout(240)
def test_voice_duplex_local_on_files_with_the_embedded_model_saves_the_session(
    local_server: str, librivox: list[Path], tmp_path: Path, env: dict[str, str]
) -> None:
    import subprocess

    db, reply = tmp_path / "state.db", tmp_path / "reply.wav"
    command = [str(RXKIT), "voice", "--duplex", "--provider", "local", "--base-url", local_server,
               "--max-tokens", "24", "--input", str(librivox[1]), "--output", str(reply),
               "--session", "offline", "--db", str(db)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    you, assistant = result.stdout.splitlines()
    assert you.startswith("you: ") and len(you.split()) >= 4
    assert assistant.startswith("assistant: ") and len(assistant) > len("assistant: ")
    saved = [(m.role, m.text) for m in asyncio.run(load(db, "offline"))]
    assert saved == [("user", you[len("you: ") :]), ("assistant", assistant[len("assistant: ") :])]
    with wave.open(str(reply), "rb") as w:
        assert w.getframerate() == 24000 and w.getnframes() > 24000 * 0.3
