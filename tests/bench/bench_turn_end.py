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

``--options``: Smart Turn's onnxruntime session options instead, a row per
configuration interleaved over 20 runs (intra-op threads, spinning, graph
optimisation level), and the Whisper features alone; each row's wall and
process CPU p50 and its probability (the verdict must not change).
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


def session_options() -> None:
    import onnxruntime as ort

    from rxkit.audio.turn_model import _last_window, smart_turn_model_path, whisper_features

    levels = ort.GraphOptimizationLevel

    def session(threads: int, spin: bool, level: Any) -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = level
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3
        return ort.InferenceSession(str(smart_turn_model_path()), sess_options=so, providers=["CPUExecutionProvider"])

    rows = {
        "1 thread, no spin, ALL (rxkit's)": session(1, False, levels.ORT_ENABLE_ALL),
        "2 threads, no spin, ALL": session(2, False, levels.ORT_ENABLE_ALL),
        "2 threads, spinning, ALL": session(2, True, levels.ORT_ENABLE_ALL),
        "1 thread, EXTENDED": session(1, False, levels.ORT_ENABLE_EXTENDED),
        "1 thread, BASIC": session(1, False, levels.ORT_ENABLE_BASIC),
    }
    pcm = read_wav(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav").pcm
    window = _last_window(pcm, 16000, 1)
    features = whisper_features(window)[None]
    wall: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    prob: dict[str, float] = {}
    print(f"load average {os.getloadavg()}")
    for run in range(22):
        for name, s in rows.items():
            c, t = time.process_time(), time.perf_counter()
            out = s.run(None, {"input_features": features})
            if run >= 2:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            prob[name] = float(np.asarray(out[0]).reshape(-1)[0])
    for name in rows:
        print(
            f"{name:34s} wall p50 {1000 * statistics.median(wall[name]):6.0f} ms  "
            f"CPU p50 {1000 * statistics.median(cpu[name]):6.0f} ms  p={prob[name]:.4f}"
        )
    times = []
    for _ in range(30):
        c, t = time.process_time(), time.perf_counter()
        whisper_features(window)
        times.append((time.perf_counter() - t, time.process_time() - c))
    print(
        f"{'whisper features (numpy)':34s} wall p50 {1000 * statistics.median(t for t, _ in times):6.0f} ms  "
        f"CPU p50 {1000 * statistics.median(c for _, c in times):6.0f} ms"
    )
    print(f"load average {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast-only", action="store_true")
    parser.add_argument("--options", action="store_true", help="Smart Turn's session options, a row each")
    args = parser.parse_args()
    if args.options:
        session_options()
        return
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
