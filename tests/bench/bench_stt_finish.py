"""pocketsphinx's final (end_utt after the user stops): CPU per turn and word error rate, per decoder setting.

Run: ``.venv/bin/python -m tests.bench.bench_stt_finish [--passes N]``

Real recorded speech with transcripts (Debian's five LibriVox sentences and
rxkit's two shipped samples), fed in 20 ms blocks as from a microphone, then
finished; the rows (decoder settings) are interleaved per recording, and each
recording is decoded ``--passes`` times (the first pass is the cold decoder's).
Reported: the final's CPU time p50 (process CPU, steadier than wall time on a
loaded machine), its wall time p50, and the pooled word error rate, first pass
and all passes. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from rxkit.audio.stt import PocketSphinxSTT
from rxkit.audio.wav import read_wav
from rxkit.notebook.samples import SPEECH_SAMPLES, speech_sample
from tests.audio.test_stt import word_errors

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ROWS: dict[str, dict[str, Any]] = {"bestpath off (now)": {}, "bestpath on (before)": {"bestpath": True}}


def recordings() -> dict[str, tuple[str, bytes]]:
    text = (LIBRIVOX / "transcription").read_text()
    out = {}
    for m in re.finditer(r"<s> (.*?) </s> \((\S+)\)", text):
        out[m[2][-4:]] = (m[1], read_wav(LIBRIVOX / f"{m[2]}.wav").pcm)
    for name in ("goforward", "something"):
        out[name] = (SPEECH_SAMPLES[name], speech_sample(name))
    return out


async def final(engine: PocketSphinxSTT, pcm: bytes) -> tuple[str, float, float]:
    rec = engine.start()
    for i in range(0, len(pcm), 640):
        await rec.feed(pcm[i : i + 640])
    c, w = time.process_time(), time.perf_counter()
    text = (await rec.finish()).text
    return text, time.process_time() - c, time.perf_counter() - w


async def run(passes: int) -> None:
    clips = recordings()
    engines = {name: PocketSphinxSTT(**options) for name, options in ROWS.items()}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    wall: dict[str, list[float]] = {name: [] for name in engines}
    errors = {name: [0] * passes for name in engines}
    words = sum(len(reference.split()) for reference, _ in clips.values())
    print(f"load average before {os.getloadavg()}")
    try:
        for p in range(passes):
            for reference, pcm in clips.values():
                for name, engine in engines.items():
                    text, seconds, waited = await final(engine, pcm)
                    cpu[name].append(seconds)
                    wall[name].append(waited)
                    errors[name][p] += word_errors(reference, text)
    finally:
        for engine in engines.values():
            engine.close()
    print(f"load average after  {os.getloadavg()}")
    print(f"{len(clips)} recordings, {words} words, {passes} passes")
    for name in engines:
        print(
            f"{name:22s} final CPU p50 {1000 * statistics.median(cpu[name]):5.0f} ms  wall p50 "
            f"{1000 * statistics.median(wall[name]):5.0f} ms  WER first pass {errors[name][0] / words:.3f}  "
            f"all passes {sum(errors[name]) / words / passes:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    asyncio.run(run(parser.parse_args().passes))


if __name__ == "__main__":
    main()
