"""Turn-end latency: the end of the user's speech (the last voiced frame) to SpeechStopped, Smart Turn vs silence.

Run: ``.venv/bin/python -m tests.bench.bench_turn_end [--fast-only]``

Real recorded speech (Debian's LibriVox sentences and rxkit's two shipped
samples), each followed by 2 s of a -60 dBFS noise floor, through the real
Silero VAD and :func:`rxkit.operators.turn_detector`:

* smart-turn: :class:`rxkit.audio.turn_model.SmartTurn` asked after 200 ms
  of silence; 1500 ms for a turn it hears as unfinished, 700 ms until it answers;
* silence: 700 ms of silence, the previous default.

Two ways to feed each file: fast (audio time: the frame at which the turn
ended, the model waited for, so inference costs nothing) and paced (one
20 ms frame every 20 ms on the asyncio loop, as a microphone: wall clock
from the last voiced frame's arrival to SpeechStopped, inference included).
Also the model's inference time on one thread (p50 of 20) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.audio.turn_model import SmartTurn
from rxkit.audio.wav import read_wav, wav_source, write_wav
from rxkit.elements import AudioFrame, SpeechStopped, VadFrame
from rxkit.notebook.samples import speech_sample
from rxkit.operators import turn_detector, vad

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def recordings(folder: Path) -> list[Path]:
    out = []
    clips = {p.stem[-4:]: read_wav(p).pcm for p in sorted(LIBRIVOX.glob("*.wav"))}
    clips.update({name: speech_sample(name) for name in ("goforward", "something")})
    noise = np.random.default_rng(14).normal(0, 33, 32000).astype(np.int16).tobytes()
    for name, pcm in clips.items():
        path = folder / f"{name}.wav"
        write_wav(path, AudioFrame(pcm + noise, 16000, 1))
        out.append(path)
    return out


def modes(model: SmartTurn) -> dict[str, dict[str, Any]]:
    return {
        "smart-turn": {"stop_ms": 700, "end_of_turn": model, "vad_stop_ms": 200, "incomplete_stop_ms": 1500},
        "silence": {"stop_ms": 700},
    }


def fast(path: Path, options: dict[str, Any]) -> tuple[str, float]:
    out: list[Any] = []
    detector = turn_detector(frames=True, wait_for_model=True, **options)
    wav_source(path).pipe(vad(), detector).subscribe(out.append)
    i = next(i for i, e in enumerate(out) if isinstance(e, SpeechStopped))
    last = out[i - 1]
    assert isinstance(last, VadFrame)
    return out[i].reason, (last.timestamp + last.duration - out[i].timestamp) * 1000


async def paced(path: Path, options: dict[str, Any]) -> tuple[str, float]:
    arrived: dict[float, float] = {}
    done = asyncio.get_running_loop().create_future()

    def on_next(e: Any) -> None:
        if isinstance(e, VadFrame):
            arrived[round(e.timestamp, 3)] = time.perf_counter()
        elif isinstance(e, SpeechStopped) and not done.done():
            done.set_result((e, time.perf_counter()))

    sch = AsyncIOScheduler(asyncio.get_running_loop())
    source = wav_source(path, realtime=True).pipe(vad(), turn_detector(frames=True, **options))
    sub = source.subscribe(on_next, scheduler=sch)
    try:
        stopped, at = await asyncio.wait_for(done, 30)
    finally:
        sub.dispose()
    # The last voiced frame ends where the silence begins: it arrived when the frame before that timestamp did.
    last = max(t for t in arrived if t < stopped.timestamp - 1e-6)
    return stopped.reason, (at - arrived[last]) * 1000


def inference_ms(model: SmartTurn, pcm: bytes) -> float:
    times = []
    for _ in range(22):
        t = time.perf_counter()
        model.probability(pcm)
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast-only", action="store_true")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, SmartTurn() as model:
        files = recordings(Path(tmp))
        print(f"load average {os.getloadavg()}")
        print(f"inference p50 {inference_ms(model, read_wav(files[0]).pcm):.0f} ms (one thread)")
        for name, options in modes(model).items():
            rows = [(p.stem, *fast(p, options)) for p in files]
            print(f"fast  {name:10s} p50 {statistics.median(r[2] for r in rows):5.0f} ms  ", rows)
        if not args.fast_only:
            for name, options in modes(model).items():
                rows = [(p.stem, *asyncio.run(paced(p, options))) for p in files]
                rows = [(s, r, round(ms)) for s, r, ms in rows]
                print(f"paced {name:10s} p50 {statistics.median(r[2] for r in rows):5.0f} ms  ", rows)
        print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
