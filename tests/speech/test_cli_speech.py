"""rxkit voice with cloud speech engines: the real CLI against the loopback speech server."""

from __future__ import annotations

import asyncio
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.speech.servers import API_KEY, SpeechServer
from tests.test_cli_voice import RECORDING, env, rxkit  # noqa: F401  (env is a fixture)


@pytest.fixture
def server() -> Iterator[SpeechServer]:
    """The speech server on a loop of its own thread, since the CLI runs in another process."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: list[SpeechServer] = []
    stop = asyncio.Event()

    async def serve() -> None:
        async with SpeechServer(transcript="what is the capital of france") as s:
            holder.append(s)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_voice_with_deepgram_ears_and_openai_voice(server: SpeechServer, env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    env = {**env, "DEEPGRAM_API_KEY": API_KEY, "DEEPGRAM_BASE_URL": server.url,
           "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": server.url + "/v1"}  # fmt: skip
    reply = tmp_path / "reply.wav"
    result = rxkit("voice", "--stt", "deepgram", "--tts", "openai", "--voice", "coral", "--input", str(RECORDING),
                   "--output", str(reply), "--provider", "mock", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "you: what is the capital of france"
    with wave.open(str(reply)) as w:
        assert w.getframerate() == 24_000 and w.getnframes() > 0  # the reply, spoken by the service
    listen = [r for r in server.requests if r["path"] == "listen"]
    speech = [r for r in server.requests if r["path"] == "speech"]
    assert listen and listen[0]["controls"] == ["CloseStream"] and listen[0]["audio"] > 0
    assert speech and all(r["body"]["voice"] == "coral" for r in speech)
    assert API_KEY not in result.stderr + result.stdout


def test_a_missing_cloud_key_is_said_before_anything_opens(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    env = {k: v for k, v in env.items() if k not in ("DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY")}
    result = rxkit("voice", "--tts", "elevenlabs", "--input", str(RECORDING), "--output", str(tmp_path / "r.wav"),
                   "--provider", "mock", env=env)  # fmt: skip
    assert result.returncode == 2 and "ELEVENLABS_API_KEY" in result.stderr, result.stderr
    result = rxkit("voice", "--stt", "openai", "--input", str(RECORDING), "--provider", "mock", env=env)
    assert result.returncode == 2 and "OPENAI_API_KEY" in result.stderr, result.stderr
    result = rxkit("voice", "--tts", "openai", "--rate", "150", "--provider", "mock", env=env)
    assert result.returncode == 2 and "--rate goes with --tts espeak" in result.stderr, result.stderr
