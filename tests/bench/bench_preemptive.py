"""Preemptive generation: end of speech -> first reply audio, with and without, on the embedded model.

Run: ``.venv/bin/python -m tests.bench.bench_preemptive [--rounds N] [--silence]``

Each turn is the real voice graph with its defaults (Silero VAD, Smart Turn, pocketsphinx, espeak-ng) on a
LibriVox sentence with a quiet noise floor around it, read in real time (paced, like a microphone; the reply
goes to a WAV file, so no device buffer is counted), answered by SmolLM2-135M on its llama.cpp server
(max 24 tokens, "answer in one short sentence"). Turns alternate ``preemptive=True`` / ``False`` on the
same recording, so machine load hits both alike. ``--silence`` ends turns by 700 ms of silence instead of
Smart Turn. Prints p50 and the spread of ``VoiceTurnLatency.total_s`` (from the last voiced frame) and of
the time from the verdict, and how many preemptive replies were used and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.audio.wav import read_wav, write_wav
from rxkit.elements import AudioFrame
from rxkit.graphs import voice_graph
from rxkit.providers.local import LocalModelServer, LocalProvider
from rxkit.telemetry.events import EventBus, PreemptiveReply, VoiceTurnLatency

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
PROMPT = "Answer in one short sentence."


def with_floor(src: Path, dst: Path, seed: int) -> Path:
    speech = np.frombuffer(read_wav(src).pcm, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, 33, 16000 * 4).astype(np.int16)
    write_wav(dst, AudioFrame(np.concatenate([noise[:4800], speech, noise[4800:]]).tobytes(), 16000, 1))
    return dst


async def one_turn(wav: Path, preemptive: bool, base_url: str, stt: Any, tts: Any, silence: bool) -> dict[str, Any]:
    bus = EventBus()
    provider = LocalProvider(base_url=base_url, defaults={"max_tokens": 24})
    options: dict[str, Any] = {"end_of_turn": "silence"} if silence else {}
    try:
        graph = voice_graph(provider, source=wav, sink=wav.with_suffix(".reply.wav"), realtime=True, stt=stt,
                            tts=tts, bus=bus, prompt=PROMPT, preemptive=preemptive, **options)  # fmt: skip
        await graph.arun()
        graph.close()
    finally:
        await provider.aclose()
    summaries = bus.events(VoiceTurnLatency)
    fates = bus.events(PreemptiveReply)
    if len(summaries) != 1:
        return {"ok": False}
    s = summaries[0]
    assert isinstance(s, VoiceTurnLatency)
    return {
        "ok": True,
        "total": s.total_s * 1000,
        "from_verdict": (s.total_s - s.audio_in_s - s.vad_hangover_s) * 1000,
        "used": sum(1 for f in fates if getattr(f, "used", False)),
        "dropped": sum(1 for f in fates if not getattr(f, "used", True)),
    }


def show(name: str, turns: list[dict[str, Any]]) -> None:
    ok = [t for t in turns if t["ok"]]
    if not ok:
        print(f"{name}: no turn gave one latency summary")
        return
    total = [t["total"] for t in ok]
    verdict = [t["from_verdict"] for t in ok]
    print(
        f"{name:<16} {len(ok):2} turns  end of speech -> audio p50 {statistics.median(total):6.0f} ms "
        f"({min(total):.0f} .. {max(total):.0f}); from the verdict p50 {statistics.median(verdict):6.0f} ms; "
        f"preemptive used {sum(t['used'] for t in ok)}, dropped {sum(t['dropped'] for t in ok)}"
    )


async def main(rounds: int, silence: bool) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}")
    recordings = sorted(SPEECH.glob("*.wav"))[:5]
    with tempfile.TemporaryDirectory() as tmp, PocketSphinxSTT() as stt, Pyttsx3TTS() as tts:
        files = [with_floor(r, Path(tmp) / r.name, i) for i, r in enumerate(recordings)]
        server = LocalModelServer(progress=False)
        server.start()
        try:
            await one_turn(files[0], False, server.base_url, stt, tts, silence)  # warm-up
            results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for r in range(rounds):
                for f in files:
                    for preemptive in (True, False) if r % 2 == 0 else (False, True):
                        results[preemptive].append(await one_turn(f, preemptive, server.base_url, stt, tts, silence))
        finally:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.2f}; end of turn: {'silence 700 ms' if silence else 'Smart Turn'}")
    show("preemptive", results[True])
    show("not preemptive", results[False])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--silence", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.silence))
