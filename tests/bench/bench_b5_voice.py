"""B5: voice latency, end of user speech to first audio out, split by component.

Run: ``.venv/bin/python -m tests.bench.bench_b5_voice [--quick] [--reps R] [--ttft S] [--json FILE]``

Each turn is one run of the real voice graph (:func:`rxkit.graphs.voice_graph`)
on a WAV file: a LibriVox sentence from Debian's pocketsphinx-testdata,
padded with 0.3 s of silence before and 1.2 s after (so the turn ends by the
turn detector's silence rule, ``stop_ms`` = 700 ms, not by the end of the
file). webrtcvad, the turn detector, pocketsphinx (streaming) and espeak-ng
are all real; the model is the mock provider with a fixed time to first
token (``--ttft``, 200 ms by default) streaming a two-sentence reply; the
reply audio goes to a WAV file. Two ways to feed the file:

* paced: the WAV source emits each 20 ms frame when it would have been
  recorded, like a microphone (real-time: the VAD hangover is real);
* fast: every frame at once, as fast as the graph takes them (the hangover
  is only processing time, and the recogniser starts behind: its backlog is
  in the STT figure).

Per turn the graph publishes a :class:`rxkit.telemetry.events.VoiceTurnLatency`:
``total`` = audio in (the mic's delivery of the last voiced frame; 0 for a file)
+ VAD hangover + STT final + model TTFT (the provider's own figure)
+ model first sentence (first token -> first chunk: a clause or a sentence) + TTS first chunk
+ audio out (0 for a file sink) + framework, the rest: what rxkit itself adds
(hand-offs between stages, the text-mode graph's state load and prompt, the
sentence chunker, the sink). Figures are medians over the turns (p50), in ms.
Target: framework under 10 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.tts import Pyttsx3TTS
from rxkit.graphs import transcript_and_reply, voice_graph
from rxkit.providers.mock import MockProvider, MockResponse
from rxkit.telemetry.events import EventBus, VoiceTurnLatency

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
TARGET_FRAMEWORK_MS = 10.0
REPLY = "Yes, I think so. He was not an ill disposed young man, as the book says."
COMPONENTS = (
    ("audio_in_s", "audio in (mic)"),
    ("vad_hangover_s", "VAD hangover"),
    ("stt_s", "STT final"),
    ("model_ttft_s", "model TTFT"),
    ("model_first_sentence_s", "model 1st sentence"),
    ("tts_first_chunk_s", "TTS 1st chunk"),
    ("audio_out_s", "audio out"),
    ("framework_s", "framework (rxkit)"),
    ("total_s", "total"),
)


def padded(src: Path, dst: Path, before: float = 0.3, after: float = 1.2) -> Path:
    """``src`` with silence around it, so the turn ends by the silence rule."""
    with wave.open(str(src), "rb") as r:
        rate, width, channels = r.getframerate(), r.getsampwidth(), r.getnchannels()
        pcm = r.readframes(r.getnframes())
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(int(rate * before) * width) + pcm + bytes(int(rate * after) * width))
    return dst


async def one_turn(wav: Path, out: Path, paced: bool, ttft: float, stt: Any, tts: Any) -> VoiceTurnLatency:
    bus = EventBus()
    provider = MockProvider([MockResponse(REPLY, first_token_latency=ttft)], bus=bus)
    graph = voice_graph(provider, source=wav, sink=out, realtime=paced, stt=stt, tts=tts, bus=bus)
    elements = await graph.arun()
    turns = transcript_and_reply(elements)
    if len(turns) != 1 or turns[0][1] != REPLY:
        raise RuntimeError(f"expected one answered turn from {wav.name}, got {turns}")
    summaries = [e for e in bus.events(VoiceTurnLatency) if isinstance(e, VoiceTurnLatency)]
    if len(summaries) != 1:
        raise RuntimeError(f"expected one latency summary, got {summaries}")
    return summaries[0]


def p50_ms(turns: list[VoiceTurnLatency], field: str) -> float:
    return statistics.median(getattr(t, field) for t in turns) * 1000


def report(name: str, turns: list[VoiceTurnLatency]) -> dict[str, Any]:
    print(f"\n{name}: {len(turns)} turns, p50 in ms (min .. max)")
    row: dict[str, Any] = {"turns": len(turns)}
    for field, label in COMPONENTS:
        values = [getattr(t, field) * 1000 for t in turns]
        row[field] = {"p50": statistics.median(values), "min": min(values), "max": max(values)}
        print(f"  {label:<20} {statistics.median(values):9.1f}   ({min(values):.1f} .. {max(values):.1f})")
    framework = row["framework_s"]["p50"]
    verdict = "ok" if framework < TARGET_FRAMEWORK_MS else "MISSED"
    print(f"  target: framework < {TARGET_FRAMEWORK_MS:g} ms at p50: {verdict}")
    return row


async def run(reps: int, ttft: float, quick: bool) -> dict[str, Any]:
    recordings = sorted(SPEECH.glob("*.wav"))
    if not recordings:
        sys.exit("pocketsphinx-testdata is not installed (/usr/share/pocketsphinx/test/data/librivox)")
    if quick:
        recordings = recordings[:2]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, PocketSphinxSTT() as stt, Pyttsx3TTS() as tts:
        files = [padded(r, Path(tmp) / r.name) for r in recordings]
        reply = Path(tmp) / "reply.wav"
        await one_turn(files[0], reply, False, ttft, stt, tts)  # warm-up: first decode, first synthesis
        for mode, paced, rounds in (("fast", False, reps), ("paced", True, 1 if quick else max(1, reps // 2))):
            turns = [await one_turn(f, reply, paced, ttft, stt, tts) for _ in range(rounds) for f in files]
            results[mode] = report(f"{mode} WAV source, mock provider TTFT {ttft * 1000:.0f} ms", turns)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="two recordings, one paced round")
    parser.add_argument("--reps", type=int, default=3, help="rounds over the five recordings, fast mode (default 3)")
    parser.add_argument("--ttft", type=float, default=0.2, help="the mock provider's time to first token, seconds")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    print(f"B5 voice latency on {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results = asyncio.run(run(args.reps, args.ttft, args.quick))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
